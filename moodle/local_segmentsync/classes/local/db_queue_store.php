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
 * The outbox table and sender state in Moodle's database.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * Outbox rows through $DB (lib/dml/moodle_database.php), sender state through plugin config.
 */
final class db_queue_store implements queue_store {

    /** @var string Plugin config prefix of the sender's state values. */
    private const STATE_PREFIX = 'state_';

    public function pending(int $limit): array {
        global $DB;
        // The get_records() method returns rows keyed by id; the sort keeps the order of the changes.
        return array_values($DB->get_records(recorder::TABLE, ['status' => recorder::STATUS_PENDING], 'id ASC', '*', 0,
            $limit));
    }

    public function delete(array $ids): void {
        global $DB;
        if ($ids) {
            $DB->delete_records_list(recorder::TABLE, 'id', $ids);
        }
    }

    public function reject(int $id, string $code, string $path, string $message): void {
        global $DB;
        $DB->update_record(recorder::TABLE, (object) [
            'id' => $id,
            'status' => recorder::STATUS_REJECTED,
            'errorcode' => \core_text::substr($code, 0, 64),
            'errorpath' => \core_text::substr($path, 0, 255),
            'errormessage' => $message,
            'timemodified' => time(),
        ]);
    }

    public function get_state(string $name): ?string {
        $value = get_config('local_segmentsync', self::STATE_PREFIX . $name);
        return $value === false || $value === null ? null : (string) $value;
    }

    public function set_state(string $name, ?string $value): void {
        if ($value === null) {
            unset_config(self::STATE_PREFIX . $name, 'local_segmentsync');
        } else {
            set_config(self::STATE_PREFIX . $name, $value, 'local_segmentsync');
        }
    }

    public function counts(): array {
        global $DB;
        return [
            'pending' => $DB->count_records(recorder::TABLE, ['status' => recorder::STATUS_PENDING]),
            'rejected' => $DB->count_records(recorder::TABLE, ['status' => recorder::STATUS_REJECTED]),
        ];
    }
}
