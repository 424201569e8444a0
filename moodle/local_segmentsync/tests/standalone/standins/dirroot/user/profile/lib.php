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
 * Stand-in for user/profile/lib.php (not Moodle): profile_user_record() and profile_get_custom_fields()
 * over the fake $DB tables user_info_field and user_info_data.
 *
 * As in Moodle: profile_get_user_fields_with_data() joins every field with the user's data; a field
 * without user data carries its defaultdata (profile_field_base::set_field()); profile_user_record() keys
 * the values by shortname and, with $onlyinuserobject true, leaves out fields whose class says
 * is_user_object_data() false (textarea).
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

/**
 * As profile_user_record().
 *
 * @param int $userid
 * @param bool $onlyinuserobject
 * @return stdClass
 */
function profile_user_record($userid, $onlyinuserobject = true) {
    global $DB;
    $fields = $DB->get_records('user_info_field', null, 'id ASC');
    uasort($fields, static function ($a, $b) {
        return [$a->sortorder ?? 0, $a->id] <=> [$b->sortorder ?? 0, $b->id];
    });
    $record = new stdClass();
    foreach ($fields as $field) {
        if ($onlyinuserobject && $field->datatype === 'textarea') {
            continue;
        }
        $data = $DB->get_record('user_info_data', ['userid' => $userid, 'fieldid' => $field->id]);
        $record->{$field->shortname} = $data ? $data->data : $field->defaultdata;
    }
    return $record;
}

/**
 * As profile_get_custom_fields(): rows of user_info_field indexed by id.
 *
 * @param bool $onlyinuserobject
 * @return stdClass[]
 */
function profile_get_custom_fields($onlyinuserobject = false) {
    global $DB;
    $fields = $DB->get_records('user_info_field', null, 'id ASC');
    if ($onlyinuserobject) {
        $fields = array_filter($fields, static function ($field) {
            return $field->datatype !== 'textarea';
        });
    }
    return $fields;
}
