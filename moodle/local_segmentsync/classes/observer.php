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
 * Event observers: every observed change becomes one outbox row.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync;

use local_segmentsync\local\moodle_source;
use local_segmentsync\local\recorder;
use local_segmentsync\local\snapshot_mapper;

/**
 * Observers registered in db/events.php as internal, so they run inside the triggering code's transaction.
 *
 * Moodle events carry ids, not profiles: each observer reads the current state (the user row,
 * profile_user_record(), the cohort or field snapshot) and queues it. No network I/O happens here;
 * the scheduled task \local_segmentsync\task\push_queue sends the queue.
 */
class observer {

    /** @var moodle_source|null shared for the request, so field definitions are read once per bulk upload */
    private static $source = null;

    /**
     * The recorder with the current settings, or null before the plugin is installed.
     *
     * @return recorder|null
     */
    public static function recorder(): ?recorder {
        // Code deployed but not yet installed (no table yet): Moodle stores a plugin's version at install.
        if (get_config('local_segmentsync', 'version') === false) {
            return null;
        }
        if (self::$source === null) {
            self::$source = new moodle_source();
        }
        return new recorder(self::$source, self::mapper());
    }

    /**
     * The mapper configured by the plugin settings; unknown values fall back to the defaults.
     *
     * @return snapshot_mapper
     */
    public static function mapper(): snapshot_mapper {
        $userid = (string) get_config('local_segmentsync', 'useridmapping');
        $segmentid = (string) get_config('local_segmentsync', 'segmentidmapping');
        if (!in_array($userid, snapshot_mapper::USER_ID_MAPPINGS, true)) {
            $userid = 'id';
        }
        if (!in_array($segmentid, snapshot_mapper::SEGMENT_ID_MAPPINGS, true)) {
            $segmentid = 'idnumber';
        }
        return new snapshot_mapper($userid, $segmentid);
    }

    /**
     * A user was created (user_create_user(), uploads, web services, auth plugins).
     *
     * @param \core\event\user_created $event
     */
    public static function user_created(\core\event\user_created $event): void {
        self::recorder()?->user_changed((int) $event->objectid, 'USER_CREATED');
    }

    /**
     * A user was updated.
     *
     * @param \core\event\user_updated $event
     */
    public static function user_updated(\core\event\user_updated $event): void {
        self::recorder()?->user_changed((int) $event->objectid, 'USER_UPDATED');
    }

    /**
     * A user was deleted; the event's other data keeps the original username and idnumber.
     *
     * @param \core\event\user_deleted $event
     */
    public static function user_deleted(\core\event\user_deleted $event): void {
        self::recorder()?->user_deleted((int) $event->objectid, (array) $event->other);
    }

    /**
     * A cohort was created.
     *
     * @param \core\event\cohort_created $event
     */
    public static function cohort_created(\core\event\cohort_created $event): void {
        $cohort = $event->get_record_snapshot('cohort', $event->objectid);
        if ($cohort) {
            self::recorder()?->cohort_changed($cohort);
        }
    }

    /**
     * A cohort was updated; cohort_update_cohort() adds no snapshot, so this reads the updated row
     * (base::get_record_snapshot() falls back to $DB->get_record()).
     *
     * @param \core\event\cohort_updated $event
     */
    public static function cohort_updated(\core\event\cohort_updated $event): void {
        $cohort = $event->get_record_snapshot('cohort', $event->objectid);
        if ($cohort) {
            self::recorder()?->cohort_changed($cohort);
        }
    }

    /**
     * A cohort was deleted; cohort_delete_cohort() adds the deleted row as the event's record snapshot.
     *
     * @param \core\event\cohort_deleted $event
     */
    public static function cohort_deleted(\core\event\cohort_deleted $event): void {
        $cohort = $event->get_record_snapshot('cohort', $event->objectid);
        if (!$cohort) {
            // No snapshot and no row left: only the id is known.
            $cohort = (object) ['id' => $event->objectid, 'idnumber' => null, 'name' => ''];
        }
        self::recorder()?->cohort_deleted($cohort);
    }

    /**
     * A custom profile field was created.
     *
     * @param \core\event\user_info_field_created $event
     */
    public static function user_info_field_created(\core\event\user_info_field_created $event): void {
        self::recorder()?->field_changed(self::field($event));
    }

    /**
     * A custom profile field was updated.
     *
     * @param \core\event\user_info_field_updated $event
     */
    public static function user_info_field_updated(\core\event\user_info_field_updated $event): void {
        self::recorder()?->field_changed(self::field($event));
    }

    /**
     * A custom profile field was deleted.
     *
     * @param \core\event\user_info_field_deleted $event
     */
    public static function user_info_field_deleted(\core\event\user_info_field_deleted $event): void {
        self::recorder()?->field_deleted(self::field($event));
    }

    /**
     * The field row of a user_info_field_* event: its record snapshot (create_from_field() adds it),
     * else the shortname, name and datatype that the event's other data must carry.
     *
     * @param \core\event\base $event
     * @return \stdClass
     */
    private static function field(\core\event\base $event): \stdClass {
        $field = $event->get_record_snapshot('user_info_field', $event->objectid);
        if ($field) {
            return $field;
        }
        $other = (array) $event->other;
        return (object) [
            'id' => $event->objectid,
            'shortname' => $other['shortname'] ?? '',
            'name' => $other['name'] ?? '',
            'datatype' => $other['datatype'] ?? 'text',
            'param1' => null,
        ];
    }
}
