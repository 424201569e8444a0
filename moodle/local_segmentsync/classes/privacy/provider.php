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
 * Privacy provider of local_segmentsync.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\privacy;

use core_privacy\local\metadata\collection;
use core_privacy\local\request\approved_contextlist;
use core_privacy\local\request\approved_userlist;
use core_privacy\local\request\contextlist;
use core_privacy\local\request\userlist;
use core_privacy\local\request\writer;

/**
 * The outbox holds users' profile snapshots until they are sent; they are sent to the processor.
 *
 * Deleting a user's data removes their queued snapshots but keeps a queued deletion (op delete, no
 * profile): it is what tells the processor to forget the user.
 */
class provider implements
        \core_privacy\local\metadata\provider,
        \core_privacy\local\request\plugin\provider,
        \core_privacy\local\request\core_userlist_provider {

    /** @var string[] Profile keys that leave Moodle (custom profile fields go too, as profile_field_<shortname>). */
    private const SENT_FIELDS = [
        'username', 'email', 'firstname', 'lastname', 'middlename', 'alternatename', 'firstnamephonetic',
        'lastnamephonetic', 'idnumber', 'institution', 'department', 'phone1', 'phone2', 'address', 'city',
        'country', 'lang', 'timezone', 'theme', 'calendartype', 'auth', 'description', 'suspended', 'confirmed',
        'timecreated', 'timemodified', 'firstaccess', 'lastaccess', 'lastlogin', 'currentlogin', 'interests',
        'customfields',
    ];

    /**
     * The stored and the exported data.
     *
     * @param collection $collection
     * @return collection
     */
    public static function get_metadata(collection $collection): collection {
        $collection->add_database_table('local_segmentsync_queue', [
            'userid' => 'privacy:metadata:queue:userid',
            'targetid' => 'privacy:metadata:queue:targetid',
            'payload' => 'privacy:metadata:queue:payload',
            'occurredat' => 'privacy:metadata:queue:occurredat',
            'status' => 'privacy:metadata:queue:status',
            'errormessage' => 'privacy:metadata:queue:errormessage',
        ], 'privacy:metadata:queue');
        $fields = [];
        foreach (self::SENT_FIELDS as $field) {
            $fields[$field] = 'privacy:metadata:processor:' . $field;
        }
        $collection->add_external_location_link('processor', $fields, 'privacy:metadata:processor');
        return $collection;
    }

    /**
     * The system context, when the user has queued rows.
     *
     * @param int $userid
     * @return contextlist
     */
    public static function get_contexts_for_userid(int $userid): contextlist {
        $contextlist = new contextlist();
        $contextlist->add_from_sql("SELECT ctx.id
                                      FROM {context} ctx
                                     WHERE ctx.contextlevel = :contextlevel
                                       AND EXISTS (SELECT 1 FROM {local_segmentsync_queue} q WHERE q.userid = :userid)",
            ['contextlevel' => CONTEXT_SYSTEM, 'userid' => $userid]);
        return $contextlist;
    }

    /**
     * Users with queued rows, in the system context.
     *
     * @param userlist $userlist
     */
    public static function get_users_in_context(userlist $userlist) {
        if ($userlist->get_context()->contextlevel != CONTEXT_SYSTEM) {
            return;
        }
        $userlist->add_from_sql('userid', 'SELECT userid FROM {local_segmentsync_queue} WHERE userid > 0', []);
    }

    /**
     * Exports the user's queued rows.
     *
     * @param approved_contextlist $contextlist
     */
    public static function export_user_data(approved_contextlist $contextlist) {
        global $DB;
        $userid = $contextlist->get_user()->id;
        foreach ($contextlist->get_contexts() as $context) {
            if ($context->contextlevel != CONTEXT_SYSTEM) {
                continue;
            }
            $rows = $DB->get_records('local_segmentsync_queue', ['userid' => $userid], 'id ASC');
            $export = [];
            foreach ($rows as $row) {
                $export[] = (object) [
                    'op' => $row->op,
                    'eventtype' => $row->eventtype,
                    'targetid' => $row->targetid,
                    'profile' => $row->payload === null ? null : json_decode($row->payload),
                    'occurredat' => \core_privacy\local\request\transform::datetime(intdiv((int) $row->occurredat, 1000)),
                    'status' => $row->status,
                    'errormessage' => $row->errormessage,
                ];
            }
            if ($export) {
                writer::with_context($context)->export_data(
                    [get_string('pluginname', 'local_segmentsync')], (object) ['queue' => $export]);
            }
        }
    }

    /**
     * Deletes every queued snapshot (queued deletions stay, see the class comment).
     *
     * @param \context $context
     */
    public static function delete_data_for_all_users_in_context(\context $context) {
        global $DB;
        if ($context->contextlevel == CONTEXT_SYSTEM) {
            $DB->delete_records_select('local_segmentsync_queue', "userid > 0 AND op <> :op", ['op' => 'delete']);
        }
    }

    /**
     * Deletes the user's queued snapshots.
     *
     * @param approved_contextlist $contextlist
     */
    public static function delete_data_for_user(approved_contextlist $contextlist) {
        global $DB;
        foreach ($contextlist->get_contexts() as $context) {
            if ($context->contextlevel == CONTEXT_SYSTEM) {
                $DB->delete_records_select('local_segmentsync_queue', "userid = :userid AND op <> :op",
                    ['userid' => $contextlist->get_user()->id, 'op' => 'delete']);
            }
        }
    }

    /**
     * Deletes the listed users' queued snapshots.
     *
     * @param approved_userlist $userlist
     */
    public static function delete_data_for_users(approved_userlist $userlist) {
        global $DB;
        if ($userlist->get_context()->contextlevel != CONTEXT_SYSTEM || !$userlist->get_userids()) {
            return;
        }
        [$insql, $params] = $DB->get_in_or_equal($userlist->get_userids(), SQL_PARAMS_NAMED);
        $params['op'] = 'delete';
        $DB->delete_records_select('local_segmentsync_queue', "userid $insql AND op <> :op", $params);
    }
}
