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
 * The recorder's reads and writes against a live Moodle.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * Reads users and profile fields through Moodle's APIs and inserts outbox rows with $DB.
 *
 * The insert uses the same $DB connection as the code that triggered the event; because the observers
 * are registered as internal (db/events.php), it runs inside that code's transaction when there is one.
 */
final class moodle_source implements source {

    /** @var int Seconds a field-definition read is reused (bulk uploads trigger one event per user). */
    private const FIELD_CACHE_SECONDS = 60;

    /** @var array|null shortname => datatype */
    private $datatypes = null;

    /** @var int When $datatypes was read. */
    private $datatypesreadat = 0;

    public function user(int $userid): ?\stdClass {
        global $DB;
        $user = $DB->get_record('user', ['id' => $userid]);
        return $user ?: null;
    }

    public function custom_values(int $userid): array {
        global $CFG;
        require_once($CFG->dirroot . '/user/profile/lib.php');
        // The second argument false includes fields that are not loaded into $USER (textarea,
        // profile_field_textarea::is_user_object_data() is false), so the snapshot is complete.
        return (array) profile_user_record($userid, false);
    }

    public function field_datatypes(): array {
        global $CFG;
        if ($this->datatypes === null || time() - $this->datatypesreadat > self::FIELD_CACHE_SECONDS) {
            require_once($CFG->dirroot . '/user/profile/lib.php');
            $this->datatypes = [];
            $this->datatypesreadat = time();
            // The profile_get_custom_fields() function returns the rows of {user_info_field} indexed by id.
            foreach (profile_get_custom_fields() as $field) {
                $this->datatypes[$field->shortname] = $field->datatype;
            }
        }
        return $this->datatypes;
    }

    public function interests(int $userid): array {
        // Interests are tags of component core, item type user (useredit_update_interests() in user/editlib.php);
        // the last argument false asks for plain names instead of htmlspecialchars-encoded ones.
        return array_values(\core_tag_tag::get_item_tags_array('core', 'user', $userid,
            \core_tag_tag::BOTH_STANDARD_AND_NOT, 0, false));
    }

    public function insert(\stdClass $row): int {
        global $DB;
        return (int) $DB->insert_record(recorder::TABLE, $row);
    }

    public function reset_field_cache(): void {
        $this->datatypes = null;
    }
}
