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
 * Settings of local_segmentsync.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

if ($hassiteconfig) {
    $settings = new admin_settingpage('local_segmentsync', new lang_string('pluginname', 'local_segmentsync'));
    $ADMIN->add('localplugins', $settings);

    if ($ADMIN->fulltree) {
        $store = new \local_segmentsync\local\db_queue_store();
        try {
            $counts = $store->counts();
            $status = get_string('statusdetails', 'local_segmentsync', (object) [
                'pending' => $counts['pending'],
                'rejected' => $counts['rejected'],
                'lasterror' => s($store->get_state('lasterror') ?? '-'),
            ]);
        } catch (dml_exception $e) {
            // The settings tree can be built before the plugin's table is installed.
            $status = '';
        }
        $settings->add(new admin_setting_heading('local_segmentsync/status',
            new lang_string('status', 'local_segmentsync'), $status));

        $settings->add(new admin_setting_heading('local_segmentsync/connection',
            new lang_string('connection', 'local_segmentsync'), ''));
        $settings->add(new admin_setting_configtext('local_segmentsync/endpoint',
            new lang_string('endpoint', 'local_segmentsync'),
            new lang_string('endpoint_desc', 'local_segmentsync'), '', PARAM_URL, 60));
        $settings->add(new admin_setting_configpasswordunmask('local_segmentsync/token',
            new lang_string('token', 'local_segmentsync'),
            new lang_string('token_desc', 'local_segmentsync'), ''));
        $settings->add(new admin_setting_configtext('local_segmentsync/siteid',
            new lang_string('siteid', 'local_segmentsync'),
            new lang_string('siteid_desc', 'local_segmentsync'), '', PARAM_TEXT, 30));

        $settings->add(new admin_setting_heading('local_segmentsync/mapping',
            new lang_string('mapping', 'local_segmentsync'), ''));
        $settings->add(new admin_setting_configselect('local_segmentsync/useridmapping',
            new lang_string('useridmapping', 'local_segmentsync'),
            new lang_string('useridmapping_desc', 'local_segmentsync'), 'id', [
                'id' => new lang_string('mapid', 'local_segmentsync'),
                'idnumber' => new lang_string('mapidnumber', 'local_segmentsync'),
                'username' => new lang_string('mapusername', 'local_segmentsync'),
            ]));
        $settings->add(new admin_setting_configselect('local_segmentsync/segmentidmapping',
            new lang_string('segmentidmapping', 'local_segmentsync'),
            new lang_string('segmentidmapping_desc', 'local_segmentsync'), 'idnumber', [
                'idnumber' => new lang_string('mapcohortidnumber', 'local_segmentsync'),
                'id' => new lang_string('mapcohortid', 'local_segmentsync'),
            ]));

        $settings->add(new admin_setting_heading('local_segmentsync/sending',
            new lang_string('sending', 'local_segmentsync'), ''));
        $settings->add(new admin_setting_configtext('local_segmentsync/batchsize',
            new lang_string('batchsize', 'local_segmentsync'),
            new lang_string('batchsize_desc', 'local_segmentsync'), '500', PARAM_INT, 5));
        $settings->add(new admin_setting_configtext('local_segmentsync/timeout',
            new lang_string('timeout', 'local_segmentsync'),
            new lang_string('timeout_desc', 'local_segmentsync'), '60', PARAM_INT, 5));
    }
}
