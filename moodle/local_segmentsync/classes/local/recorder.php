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
 * Turns observed changes into outbox rows.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * Builds one outbox row per observed change and writes it through the source.
 *
 * A change that cannot be mapped (for example a user without idnumber while users are mapped by idnumber)
 * is still written, as a REJECTED row with the reason, so an admin sees it; nothing is dropped silently.
 */
final class recorder {

    /** @var string Outbox table name. */
    public const TABLE = 'local_segmentsync_queue';

    /** @var string Row kinds: a user snapshot or deletion, a cohort, a profile field definition. */
    public const KIND_USER = 'user';
    /** @var string */
    public const KIND_SEGMENT = 'segment';
    /** @var string */
    public const KIND_FIELD = 'field';

    /** @var string Row operations. */
    public const OP_UPSERT = 'upsert';
    /** @var string */
    public const OP_DELETE = 'delete';

    /** @var string Row states: waiting to be sent, or refused (kept with the reason). */
    public const STATUS_PENDING = 'pending';
    /** @var string */
    public const STATUS_REJECTED = 'rejected';

    /** @var source */
    private $source;

    /** @var snapshot_mapper */
    private $mapper;

    /** @var callable(): int current time in epoch milliseconds */
    private $clockms;

    /**
     * @param source $source Moodle reads and the outbox write
     * @param snapshot_mapper $mapper the configured mapping
     * @param callable|null $clockms returns epoch milliseconds (default: the system clock)
     */
    public function __construct(source $source, snapshot_mapper $mapper, ?callable $clockms = null) {
        $this->source = $source;
        $this->mapper = $mapper;
        $this->clockms = $clockms ?? static function (): int {
            return (int) floor(microtime(true) * 1000);
        };
    }

    /**
     * Queues a full snapshot of a created or updated user (a deleted one is queued as a deletion).
     *
     * @param int $userid
     * @param string $eventtype USER_CREATED or USER_UPDATED
     * @return \stdClass|null the row written, or null when the user no longer exists
     */
    public function user_changed(int $userid, string $eventtype): ?\stdClass {
        $user = $this->source->user($userid);
        if ($user === null) {
            return null;
        }
        if (!empty($user->deleted)) {
            // A deleted user keeps its row with deleted=1; no usable username/idnumber is left (delete_user()).
            return $this->user_deleted($userid, []);
        }
        $row = $this->row(self::KIND_USER, self::OP_UPSERT, $userid, $userid);
        $row->eventtype = $eventtype;
        $profile = $this->mapper->profile($user, $this->source->custom_values($userid),
            $this->source->field_datatypes(), $this->source->interests($userid));
        $row->payload = self::json((object) $profile);
        $targetid = $this->mapper->user_id($user);
        if ($targetid === null) {
            $this->refuse($row, 'NO_USER_ID', '$.user_id',
                "user $userid has an empty or too long {$this->mapper->user_id_mapping()}, which is the user id " .
                "mapping (local_segmentsync | useridmapping): set it on the user, or change the mapping");
        } else {
            $row->targetid = $targetid;
        }
        return $this->write($row);
    }

    /**
     * Queues the deletion of a user.
     *
     * @param int $userid the event's objectid
     * @param array $other the event's other data (original username and idnumber)
     * @return \stdClass the row written
     */
    public function user_deleted(int $userid, array $other): \stdClass {
        $row = $this->row(self::KIND_USER, self::OP_DELETE, $userid, $userid);
        $row->eventtype = 'USER_DELETED';
        $targetid = $this->mapper->deleted_user_id($userid, $other);
        if ($targetid === null) {
            $this->refuse($row, 'NO_USER_ID', '$.user_id',
                "deleted user $userid had no {$this->mapper->user_id_mapping()}, which is the user id mapping: " .
                "remove it from the processor by hand if it was ever sent");
        } else {
            $row->targetid = $targetid;
        }
        return $this->write($row);
    }

    /**
     * Queues a created or updated cohort as an UpsertSegment; a cohort without a segment id is not a segment.
     *
     * @param \stdClass $cohort a row of {cohort}
     * @return \stdClass|null the row written, or null when the cohort does not map to a segment
     */
    public function cohort_changed(\stdClass $cohort): ?\stdClass {
        $segmentid = $this->mapper->segment_id($cohort);
        if ($segmentid === null) {
            return null;
        }
        $row = $this->row(self::KIND_SEGMENT, self::OP_UPSERT, (int) $cohort->id, 0);
        $row->targetid = $segmentid;
        $row->payload = self::json((object) $this->mapper->segment_body($cohort));
        return $this->write($row);
    }

    /**
     * Queues a deleted cohort as a DeleteSegment.
     *
     * @param \stdClass $cohort the cohort's record snapshot (cohort_delete_cohort() adds it to the event)
     * @return \stdClass|null
     */
    public function cohort_deleted(\stdClass $cohort): ?\stdClass {
        $segmentid = $this->mapper->segment_id($cohort);
        if ($segmentid === null) {
            return null;
        }
        $row = $this->row(self::KIND_SEGMENT, self::OP_DELETE, (int) $cohort->id, 0);
        $row->targetid = $segmentid;
        return $this->write($row);
    }

    /**
     * Queues a created or updated profile field as an UpsertProfileField.
     *
     * @param \stdClass $field a row of {user_info_field}
     * @return \stdClass
     */
    public function field_changed(\stdClass $field): \stdClass {
        $this->source->reset_field_cache();
        $row = $this->row(self::KIND_FIELD, self::OP_UPSERT, (int) $field->id, 0);
        $row->targetid = (string) $field->shortname;
        $row->payload = self::json((object) $this->mapper->field_body($field));
        return $this->write($row);
    }

    /**
     * Queues a deleted profile field as a DeleteProfileField.
     *
     * @param \stdClass $field the field's record snapshot
     * @return \stdClass
     */
    public function field_deleted(\stdClass $field): \stdClass {
        $this->source->reset_field_cache();
        $row = $this->row(self::KIND_FIELD, self::OP_DELETE, (int) $field->id, 0);
        $row->targetid = (string) $field->shortname;
        return $this->write($row);
    }

    /**
     * A new pending row.
     *
     * @param string $kind
     * @param string $op
     * @param int $objectid
     * @param int $userid
     * @return \stdClass
     */
    private function row(string $kind, string $op, int $objectid, int $userid): \stdClass {
        $now = ($this->clockms)();
        return (object) [
            'kind' => $kind,
            'op' => $op,
            'objectid' => $objectid,
            'userid' => $userid,
            'targetid' => '',
            'eventtype' => null,
            'payload' => null,
            'occurredat' => $now,
            'status' => self::STATUS_PENDING,
            'errorcode' => null,
            'errorpath' => null,
            'errormessage' => null,
            'timecreated' => intdiv($now, 1000),
            'timemodified' => intdiv($now, 1000),
        ];
    }

    /**
     * Marks a row as refused before it is sent.
     *
     * @param \stdClass $row
     * @param string $code
     * @param string $path
     * @param string $message
     */
    private function refuse(\stdClass $row, string $code, string $path, string $message): void {
        $row->status = self::STATUS_REJECTED;
        $row->errorcode = $code;
        $row->errorpath = $path;
        $row->errormessage = $message;
    }

    /**
     * Writes the row and returns it with its id.
     *
     * @param \stdClass $row
     * @return \stdClass
     */
    private function write(\stdClass $row): \stdClass {
        $row->id = $this->source->insert($row);
        return $row;
    }

    /**
     * JSON of a value; invalid UTF-8 is replaced rather than failing the caller's request.
     *
     * @param mixed $value
     * @return string
     */
    public static function json($value): string {
        return json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE |
            JSON_INVALID_UTF8_SUBSTITUTE | JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR);
    }
}
