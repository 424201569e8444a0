<?php
// This file is part of Moodle - https://moodle.org/
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// Moodle is distributed in the hope that it will be useful,
// but WITHOUT ANY WARRANTY; without even the implied warranty of
// MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
// GNU General Public License for more details.
//
// You should have received a copy of the GNU General Public License
// along with Moodle.  If not, see <https://www.gnu.org/licenses/>.

/**
 * Where the sender reads and settles outbox rows.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * The outbox table and the sender's small persistent state (back-off, last error), behind an interface.
 */
interface queue_store {

    /**
     * Pending rows in id order (the order of the changes).
     *
     * @param int $limit at most this many
     * @return \stdClass[]
     */
    public function pending(int $limit): array;

    /**
     * Deletes rows that the processor accepted.
     *
     * @param int[] $ids
     */
    public function delete(array $ids): void;

    /**
     * Keeps a row as rejected, with the reason; it is not sent again unless an admin re-queues it.
     *
     * @param int $id
     * @param string $code machine code (the processor's, or a local one)
     * @param string $path JSON path of the offending value
     * @param string $message what an admin can act on
     */
    public function reject(int $id, string $code, string $path, string $message): void;

    /**
     * A state value, or null.
     *
     * @param string $name
     * @return string|null
     */
    public function get_state(string $name): ?string;

    /**
     * Sets (or with null, clears) a state value.
     *
     * @param string $name
     * @param string|null $value
     */
    public function set_state(string $name, ?string $value): void;

    /**
     * Row counts by status.
     *
     * @return array{pending:int,rejected:int}
     */
    public function counts(): array;
}
