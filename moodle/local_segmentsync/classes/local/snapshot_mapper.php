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
 * Maps Moodle records to the processor's profile, segment and field formats.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * Pure mapping from Moodle rows to the ingest contract (no Moodle calls, so it is unit-tested alone).
 *
 * The profile format is the processor's (docs/contract.md, "Input: user events"): standard fields by
 * Moodle's names, custom fields as profile_field_<shortname>, datetimes as epoch seconds (0 = unset),
 * checkboxes as booleans, interests as an array of strings. The field lists mirror
 * processor/rules/fields.py STANDARD_FIELDS; nothing else of the user row (password, secret, ...) is sent.
 */
final class snapshot_mapper {

    /** @var string Prefix of custom profile fields, as Moodle's profile_field_base::$inputname uses it. */
    public const CUSTOM_PREFIX = 'profile_field_';

    /** @var string[] Standard user fields sent as strings. */
    public const TEXT_FIELDS = [
        'username', 'email', 'firstname', 'lastname', 'middlename', 'alternatename', 'firstnamephonetic',
        'lastnamephonetic', 'idnumber', 'institution', 'department', 'phone1', 'phone2', 'address', 'city',
        'country', 'lang', 'timezone', 'theme', 'calendartype', 'auth', 'description',
    ];

    /** @var string[] Standard user fields sent as booleans. */
    public const BOOL_FIELDS = ['suspended', 'confirmed'];

    /** @var string[] Standard user fields sent as epoch seconds. */
    public const TIME_FIELDS = ['timecreated', 'timemodified', 'firstaccess', 'lastaccess', 'lastlogin', 'currentlogin'];

    /** @var string[] Allowed values of the user id mapping setting. */
    public const USER_ID_MAPPINGS = ['id', 'idnumber', 'username'];

    /** @var string[] Allowed values of the segment id mapping setting. */
    public const SEGMENT_ID_MAPPINGS = ['idnumber', 'id'];

    /** @var array<string,string> Moodle profile field datatype => processor FieldType (processor/rules/fields.py). */
    public const FIELD_TYPES = [
        'text' => 'TEXT',
        'textarea' => 'TEXTAREA',
        'menu' => 'MENU',
        'checkbox' => 'CHECKBOX',
        'datetime' => 'DATETIME',
        'social' => 'TEXT',
    ];

    /** @var int Longest id the processor accepts (docs/contract.md: ids are 1..255 characters). */
    public const MAX_ID_LENGTH = 255;

    /** @var string */
    private $useridmapping;

    /** @var string */
    private $segmentidmapping;

    /**
     * @param string $useridmapping id|idnumber|username: which user column is the processor's user_id
     * @param string $segmentidmapping idnumber|id: which cohort column is the processor's segment_id
     */
    public function __construct(string $useridmapping = 'id', string $segmentidmapping = 'idnumber') {
        if (!in_array($useridmapping, self::USER_ID_MAPPINGS, true)) {
            throw new \InvalidArgumentException("unknown user id mapping '$useridmapping'");
        }
        if (!in_array($segmentidmapping, self::SEGMENT_ID_MAPPINGS, true)) {
            throw new \InvalidArgumentException("unknown segment id mapping '$segmentidmapping'");
        }
        $this->useridmapping = $useridmapping;
        $this->segmentidmapping = $segmentidmapping;
    }

    /**
     * The user id mapping in use.
     *
     * @return string
     */
    public function user_id_mapping(): string {
        return $this->useridmapping;
    }

    /**
     * The segment id mapping in use.
     *
     * @return string
     */
    public function segment_id_mapping(): string {
        return $this->segmentidmapping;
    }

    /**
     * A full profile snapshot of one user.
     *
     * @param \stdClass $user a row of {user}
     * @param array $customvalues shortname => raw value, as (array) profile_user_record($userid, false) returns it
     *        (user/profile/lib.php: the user's user_info_data.data, or the field's defaultdata when the user has none)
     * @param array $datatypes shortname => Moodle datatype (user_info_field.datatype)
     * @param string[] $interests the user's interests (tag display names, plain text)
     * @return array profile key => value
     */
    public function profile(\stdClass $user, array $customvalues, array $datatypes, array $interests): array {
        $profile = [];
        foreach (self::TEXT_FIELDS as $name) {
            if (property_exists($user, $name)) {
                $profile[$name] = $user->$name === null ? null : (string) $user->$name;
            }
        }
        foreach (self::BOOL_FIELDS as $name) {
            if (property_exists($user, $name)) {
                $profile[$name] = !empty($user->$name);
            }
        }
        foreach (self::TIME_FIELDS as $name) {
            if (property_exists($user, $name)) {
                $profile[$name] = self::epoch($user->$name);
            }
        }
        $profile['interests'] = array_values(array_map('strval', $interests));
        foreach ($customvalues as $shortname => $raw) {
            $datatype = $datatypes[$shortname] ?? 'text';
            $profile[self::CUSTOM_PREFIX . $shortname] = self::custom_value($datatype, $raw);
        }
        return $profile;
    }

    /**
     * Converts a custom field's stored value to the contract's type.
     *
     * Moodle stores every value as text in user_info_data.data: checkbox '0'/'1'
     * (profile_field_checkbox), datetime an epoch as text (profile_field_datetime::edit_save_data_preprocess),
     * menu the chosen option's text (profile_field_menu).
     *
     * @param string $datatype Moodle datatype
     * @param mixed $raw stored value or null
     * @return mixed
     */
    public static function custom_value(string $datatype, $raw) {
        switch ($datatype) {
            case 'checkbox':
                return $raw === null ? null : ((int) $raw) === 1;
            case 'datetime':
                return self::epoch($raw);
            default:
                return $raw === null ? null : (string) $raw;
        }
    }

    /**
     * Epoch seconds from a stored value; null, '' and non-numbers are 0 (unset, as in Moodle).
     *
     * @param mixed $value
     * @return int
     */
    private static function epoch($value): int {
        if ($value === null || $value === '' || !is_numeric($value)) {
            return 0;
        }
        return (int) $value;
    }

    /**
     * The processor's user_id of a live user, or null when the mapped column is empty.
     *
     * @param \stdClass $user a row of {user}
     * @return string|null
     */
    public function user_id(\stdClass $user): ?string {
        $value = $this->useridmapping === 'id' ? (string) (int) $user->id : (string) ($user->{$this->useridmapping} ?? '');
        return self::valid_id($value);
    }

    /**
     * The processor's user_id of a user that \core\event\user_deleted reports.
     *
     * delete_user() (lib/moodlelib.php) has already replaced username and emptied idnumber in {user} when
     * the event fires; the event's "other" keeps the original username and idnumber, so those are used.
     *
     * @param int $userid the event's objectid
     * @param array $other the event's other data
     * @return string|null
     */
    public function deleted_user_id(int $userid, array $other): ?string {
        if ($this->useridmapping === 'id') {
            return (string) $userid;
        }
        return self::valid_id((string) ($other[$this->useridmapping] ?? ''));
    }

    /**
     * The processor's segment_id of a cohort, or null when the mapped column is empty (not a segment).
     *
     * @param \stdClass $cohort a row of {cohort}
     * @return string|null
     */
    public function segment_id(\stdClass $cohort): ?string {
        $value = $this->segmentidmapping === 'id' ? (string) (int) $cohort->id : (string) ($cohort->idnumber ?? '');
        return self::valid_id($value);
    }

    /**
     * Body of PUT /sites/{site}/segments/{segment}.
     *
     * @param \stdClass $cohort
     * @return array
     */
    public function segment_body(\stdClass $cohort): array {
        return ['name' => (string) $cohort->name];
    }

    /**
     * Body of PUT /sites/{site}/fields/{shortname}, built from a row of {user_info_field}.
     *
     * @param \stdClass $field
     * @return array
     */
    public function field_body(\stdClass $field): array {
        $body = ['name' => (string) $field->name, 'datatype' => self::field_type((string) $field->datatype)];
        if ($field->datatype === 'menu') {
            $body['options'] = self::menu_options($field->param1 ?? null);
        }
        return $body;
    }

    /**
     * The processor FieldType of a Moodle datatype; datatypes of third-party plugins are TEXT.
     *
     * @param string $datatype
     * @return string
     */
    public static function field_type(string $datatype): string {
        return self::FIELD_TYPES[$datatype] ?? 'TEXT';
    }

    /**
     * Menu options: user_info_field.param1 holds one option per line (profile_field_menu explodes it on "\n").
     *
     * @param string|null $param1
     * @return string[]
     */
    public static function menu_options(?string $param1): array {
        if ($param1 === null) {
            return [];
        }
        $options = [];
        foreach (explode("\n", str_replace("\r", '', $param1)) as $option) {
            $option = trim($option);
            if ($option !== '' && !in_array($option, $options, true)) {
                $options[] = $option;
            }
        }
        return $options;
    }

    /**
     * A non-empty id of at most MAX_ID_LENGTH characters, or null.
     *
     * @param string $value
     * @return string|null
     */
    private static function valid_id(string $value): ?string {
        if ($value === '' || mb_strlen($value, 'UTF-8') > self::MAX_ID_LENGTH) {
            return null;
        }
        return $value;
    }
}
