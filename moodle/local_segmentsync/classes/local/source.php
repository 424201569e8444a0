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
 * What the recorder reads from Moodle and where it writes the outbox row.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * The Moodle reads and the outbox write of an observer, behind an interface so the recorder is testable.
 */
interface source {

    /**
     * A row of {user}, or null when there is none.
     *
     * @param int $userid
     * @return \stdClass|null
     */
    public function user(int $userid): ?\stdClass;

    /**
     * Custom profile values of a user: shortname => raw value (profile_user_record($userid, false)).
     *
     * @param int $userid
     * @return array
     */
    public function custom_values(int $userid): array;

    /**
     * Datatype of every custom profile field: shortname => datatype.
     *
     * @return array
     */
    public function field_datatypes(): array;

    /**
     * The user's interests as plain-text tag names.
     *
     * @param int $userid
     * @return string[]
     */
    public function interests(int $userid): array;

    /**
     * Writes one outbox row (in the caller's transaction, if there is one) and returns its id.
     *
     * @param \stdClass $row
     * @return int
     */
    public function insert(\stdClass $row): int;

    /**
     * Forgets anything cached about profile field definitions (they just changed).
     */
    public function reset_field_cache(): void;
}
