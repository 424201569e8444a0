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
 * Web service: custom profile field definitions.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\external;

use core_external\external_api;
use core_external\external_function_parameters;
use core_external\external_multiple_structure;
use core_external\external_single_structure;
use core_external\external_value;
use local_segmentsync\local\snapshot_mapper;

/**
 * local_segmentsync_get_profile_fields: the definitions that Moodle's core web services do not list.
 *
 * The connector (python -m processor moodle import / resync) calls it when it is available, to declare
 * fields with the right type and menu options. Uses the external API of Moodle 4.2+ (core_external).
 */
class get_profile_fields extends external_api {

    /**
     * No parameters.
     *
     * @return external_function_parameters
     */
    public static function execute_parameters(): external_function_parameters {
        return new external_function_parameters([]);
    }

    /**
     * Every custom profile field, in id order.
     *
     * @return array
     */
    public static function execute(): array {
        global $CFG;
        $context = \context_system::instance();
        self::validate_context($context);
        require_capability('local/segmentsync:viewprofilefields', $context);
        require_once($CFG->dirroot . '/user/profile/lib.php');

        $fields = [];
        foreach (profile_get_custom_fields() as $field) {
            $fields[] = [
                'id' => (int) $field->id,
                'shortname' => (string) $field->shortname,
                'name' => (string) $field->name,
                'datatype' => (string) $field->datatype,
                'type' => snapshot_mapper::field_type((string) $field->datatype),
                'profilekey' => snapshot_mapper::CUSTOM_PREFIX . $field->shortname,
                'options' => $field->datatype === 'menu' ? snapshot_mapper::menu_options($field->param1) : [],
                'defaultdata' => $field->defaultdata === null ? null : (string) $field->defaultdata,
                'categoryid' => (int) $field->categoryid,
                'required' => !empty($field->required),
                'locked' => !empty($field->locked),
                'visible' => (int) $field->visible,
                'forceunique' => !empty($field->forceunique),
            ];
        }
        return ['fields' => $fields];
    }

    /**
     * The answer's structure.
     *
     * @return external_single_structure
     */
    public static function execute_returns(): external_single_structure {
        return new external_single_structure([
            'fields' => new external_multiple_structure(new external_single_structure([
                'id' => new external_value(PARAM_INT, 'user_info_field id'),
                'shortname' => new external_value(PARAM_RAW, 'short name'),
                'name' => new external_value(PARAM_RAW, 'name, unformatted'),
                'datatype' => new external_value(PARAM_ALPHANUMEXT, 'Moodle datatype: text, textarea, menu, checkbox, ' .
                    'datetime, social or a third-party one'),
                'type' => new external_value(PARAM_ALPHA, 'the processor\'s field type: TEXT, TEXTAREA, MENU, CHECKBOX, ' .
                    'DATETIME (third-party datatypes map to TEXT)'),
                'profilekey' => new external_value(PARAM_RAW, 'key in the processor\'s profiles: profile_field_<shortname>'),
                'options' => new external_multiple_structure(new external_value(PARAM_RAW, 'menu option'),
                    'menu options, one per line of param1; empty for other datatypes'),
                'defaultdata' => new external_value(PARAM_RAW, 'default value', VALUE_OPTIONAL),
                'categoryid' => new external_value(PARAM_INT, 'profile field category id'),
                'required' => new external_value(PARAM_BOOL, 'required'),
                'locked' => new external_value(PARAM_BOOL, 'locked'),
                'visible' => new external_value(PARAM_INT, 'visibility: 0 hidden, 1 private, 2 everyone (PROFILE_VISIBLE_*)'),
                'forceunique' => new external_value(PARAM_BOOL, 'values must be unique'),
            ])),
        ]);
    }
}
