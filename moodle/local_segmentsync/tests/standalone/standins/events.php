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
 * Stand-ins for the \core\event classes the plugin observes, and a dispatcher (not Moodle).
 *
 * As lib/classes/event/base.php: create() runs init() then merges the data; __get() reads the data;
 * get_record_snapshot() returns an added snapshot or reads the row with $DB->get_record(). As the event
 * classes: user_deleted requires username, email, idnumber, picture, mnethostid in other;
 * user_info_field_*::create_from_field() puts shortname, name, datatype in other and adds the snapshot.
 * The dispatcher calls the callbacks declared in the plugin's db/events.php, as
 * \core\event\manager::process_buffers() does for internal observers.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace core\event {

    /**
     * As \core\event\base, reduced.
     */
    abstract class base {
        /** @var array */
        protected $data = [];
        /** @var array */
        protected $recordsnapshots = [];

        /** Sets objecttable and crud. */
        abstract protected function init();

        /** Use create(). */
        final public function __construct() {
        }

        /**
         * As base::create().
         *
         * @param array|null $data
         * @return static
         */
        public static function create(?array $data = null) {
            $event = new static();
            $event->data = ['objectid' => null, 'other' => null, 'timecreated' => time()];
            $event->init();
            foreach ($data ?? [] as $key => $value) {
                $event->data[$key] = $value;
            }
            $event->validate_data();
            return $event;
        }

        /** As base::validate_data(); subclasses add checks. */
        protected function validate_data() {
        }

        /**
         * As base::add_record_snapshot().
         *
         * @param string $tablename
         * @param \stdClass $record
         */
        public function add_record_snapshot($tablename, $record) {
            $this->recordsnapshots[$tablename][$record->id] = $record;
        }

        /**
         * As base::get_record_snapshot(): the snapshot, else the row from $DB.
         *
         * @param string $tablename
         * @param int $id
         * @return \stdClass|false
         */
        public function get_record_snapshot($tablename, $id) {
            global $DB;
            if (isset($this->recordsnapshots[$tablename][$id])) {
                return $this->recordsnapshots[$tablename][$id];
            }
            $record = $DB->get_record($tablename, ['id' => $id]);
            $this->recordsnapshots[$tablename][$id] = $record;
            return $record;
        }

        /**
         * As base::__get() (Moodle only warns on an unknown name; the stand-in fails the test).
         *
         * @param string $name
         * @return mixed
         */
        public function __get($name) {
            if (array_key_exists($name, $this->data)) {
                return $this->data[$name];
            }
            throw new \coding_exception("Accessing non-existent event property '$name'");
        }

        /** As base::trigger(): hands the event to the dispatcher. */
        public function trigger() {
            \standin_event_manager::dispatch($this);
        }
    }

    /** As \core\event\user_created. */
    class user_created extends base {
        protected function init() {
            $this->data['objecttable'] = 'user';
            $this->data['crud'] = 'c';
        }

        /**
         * As user_created::create_from_userid().
         *
         * @param int $userid
         * @return user_created
         */
        public static function create_from_userid($userid) {
            return self::create(['objectid' => $userid, 'relateduserid' => $userid]);
        }
    }

    /** As \core\event\user_updated. */
    class user_updated extends base {
        protected function init() {
            $this->data['objecttable'] = 'user';
            $this->data['crud'] = 'u';
        }

        /**
         * As user_updated::create_from_userid().
         *
         * @param int $userid
         * @return user_updated
         */
        public static function create_from_userid($userid) {
            return self::create(['objectid' => $userid, 'relateduserid' => $userid]);
        }
    }

    /** As \core\event\user_deleted, with its validation of other. */
    class user_deleted extends base {
        protected function init() {
            $this->data['objecttable'] = 'user';
            $this->data['crud'] = 'd';
        }

        protected function validate_data() {
            foreach (['username', 'email', 'idnumber', 'picture', 'mnethostid'] as $key) {
                if (!isset($this->data['other'][$key])) {
                    throw new \coding_exception("$key must be set in \$other.");
                }
            }
        }
    }

    /** As \core\event\cohort_created. */
    class cohort_created extends base {
        protected function init() {
            $this->data['objecttable'] = 'cohort';
            $this->data['crud'] = 'c';
        }
    }

    /** As \core\event\cohort_updated. */
    class cohort_updated extends base {
        protected function init() {
            $this->data['objecttable'] = 'cohort';
            $this->data['crud'] = 'u';
        }
    }

    /** As \core\event\cohort_deleted. */
    class cohort_deleted extends base {
        protected function init() {
            $this->data['objecttable'] = 'cohort';
            $this->data['crud'] = 'd';
        }
    }

    /** Shared create_from_field() of the user_info_field_* events. */
    trait user_info_field_event {
        /**
         * As user_info_field_created::create_from_field().
         *
         * @param \stdClass $field
         * @return static
         */
        public static function create_from_field($field) {
            $event = self::create([
                'objectid' => $field->id,
                'other' => ['shortname' => $field->shortname, 'name' => $field->name, 'datatype' => $field->datatype],
            ]);
            $event->add_record_snapshot('user_info_field', $field);
            return $event;
        }

        protected function validate_data() {
            foreach (['shortname', 'name', 'datatype'] as $key) {
                if (!isset($this->data['other'][$key])) {
                    throw new \coding_exception("The '$key' value must be set in other.");
                }
            }
        }
    }

    /** As \core\event\user_info_field_created. */
    class user_info_field_created extends base {
        use user_info_field_event;

        protected function init() {
            $this->data['objecttable'] = 'user_info_field';
            $this->data['crud'] = 'c';
        }
    }

    /** As \core\event\user_info_field_updated. */
    class user_info_field_updated extends base {
        use user_info_field_event;

        protected function init() {
            $this->data['objecttable'] = 'user_info_field';
            $this->data['crud'] = 'u';
        }
    }

    /** As \core\event\user_info_field_deleted. */
    class user_info_field_deleted extends base {
        use user_info_field_event;

        protected function init() {
            $this->data['objecttable'] = 'user_info_field';
            $this->data['crud'] = 'd';
        }
    }
}

namespace {

    /**
     * Calls the callbacks that the plugin's db/events.php declares for an event.
     */
    class standin_event_manager {
        /**
         * The plugin's observer declarations.
         *
         * @return array[]
         */
        public static function observers(): array {
            $observers = null;
            include(__DIR__ . '/../../../db/events.php');
            return $observers;
        }

        /**
         * Dispatches to every matching observer, as manager::process_buffers() does for internal ones.
         *
         * @param \core\event\base $event
         */
        public static function dispatch(\core\event\base $event): void {
            $name = '\\' . get_class($event);
            foreach (self::observers() as $observer) {
                if ($observer['eventname'] === $name) {
                    call_user_func($observer['callback'], $event);
                }
            }
        }
    }
}
