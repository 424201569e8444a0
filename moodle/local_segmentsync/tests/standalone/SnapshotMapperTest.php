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
 * Tests of the snapshot mapping (Moodle rows to the processor's profile format).
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

use local_segmentsync\local\snapshot_mapper;
use PHPUnit\Framework\TestCase;

/**
 * The profile, id and field mappings against the ingest contract (docs/contract.md).
 */
final class SnapshotMapperTest extends TestCase {

    /**
     * A {user} row as Moodle's DML returns it: every column a string (or null).
     *
     * @return stdClass
     */
    private static function user(): stdClass {
        return (object) [
            'id' => '42', 'auth' => 'manual', 'confirmed' => '1', 'deleted' => '0', 'suspended' => '0',
            'mnethostid' => '1', 'username' => 'alice', 'password' => '$2y$10$secret', 'secret' => 'abc',
            'idnumber' => 'E-0042', 'firstname' => 'Alice', 'lastname' => 'Liddell', 'email' => 'alice@example.org',
            'phone1' => '', 'phone2' => '', 'institution' => 'Wonderland', 'department' => 'Sales',
            'address' => '', 'city' => 'Oxford', 'country' => 'GB', 'lang' => 'en', 'calendartype' => 'gregorian',
            'theme' => '', 'timezone' => '99', 'firstaccess' => '1764700000', 'lastaccess' => '1764790000',
            'lastlogin' => '0', 'currentlogin' => '1764790000', 'lastip' => '10.0.0.1', 'picture' => '0',
            'description' => '<p>Hi</p>', 'descriptionformat' => '1', 'timecreated' => '1764600000',
            'timemodified' => '1764800000', 'middlename' => null, 'alternatename' => '', 'firstnamephonetic' => '',
            'lastnamephonetic' => '',
        ];
    }

    public function test_profile_types_standard_fields_like_the_contract(): void {
        $profile = (new snapshot_mapper())->profile(self::user(), [], [], ['Chess', 'R&D']);
        $this->assertSame('alice', $profile['username']);
        $this->assertSame('Sales', $profile['department']);
        $this->assertSame('<p>Hi</p>', $profile['description']);
        $this->assertNull($profile['middlename']);
        $this->assertFalse($profile['suspended']);
        $this->assertTrue($profile['confirmed']);
        $this->assertSame(1764790000, $profile['lastaccess']);
        $this->assertSame(0, $profile['lastlogin']);
        $this->assertSame(1764600000, $profile['timecreated']);
        $this->assertSame(['Chess', 'R&D'], $profile['interests']);
    }

    public function test_profile_never_carries_secrets_or_internal_columns(): void {
        $profile = (new snapshot_mapper())->profile(self::user(), [], [], []);
        foreach (['password', 'secret', 'lastip', 'deleted', 'mnethostid', 'picture', 'id', 'descriptionformat'] as $name) {
            $this->assertArrayNotHasKey($name, $profile);
        }
    }

    public function test_suspended_user_is_true(): void {
        $user = self::user();
        $user->suspended = '1';
        $this->assertTrue((new snapshot_mapper())->profile($user, [], [], [])['suspended']);
    }

    public function test_custom_fields_by_datatype(): void {
        $values = [
            'level' => 'Senior', 'manager' => '1', 'contractor' => '0', 'hired' => '1700000000', 'left' => '',
            'bio' => '<b>x</b>', 'nick' => null, 'badge' => 'x', 'twitter' => '@alice',
        ];
        $types = [
            'level' => 'menu', 'manager' => 'checkbox', 'contractor' => 'checkbox', 'hired' => 'datetime',
            'left' => 'datetime', 'bio' => 'textarea', 'nick' => 'text', 'badge' => 'thirdparty', 'twitter' => 'social',
        ];
        $profile = (new snapshot_mapper())->profile(self::user(), $values, $types, []);
        $this->assertSame('Senior', $profile['profile_field_level']);
        $this->assertTrue($profile['profile_field_manager']);
        $this->assertFalse($profile['profile_field_contractor']);
        $this->assertSame(1700000000, $profile['profile_field_hired']);
        $this->assertSame(0, $profile['profile_field_left']);
        $this->assertSame('<b>x</b>', $profile['profile_field_bio']);
        $this->assertArrayHasKey('profile_field_nick', $profile);
        $this->assertNull($profile['profile_field_nick']);
        $this->assertSame('x', $profile['profile_field_badge']);
        $this->assertSame('@alice', $profile['profile_field_twitter']);
    }

    public function test_user_id_mappings(): void {
        $user = self::user();
        $this->assertSame('42', (new snapshot_mapper('id'))->user_id($user));
        $this->assertSame('E-0042', (new snapshot_mapper('idnumber'))->user_id($user));
        $this->assertSame('alice', (new snapshot_mapper('username'))->user_id($user));
        $user->idnumber = '';
        $this->assertNull((new snapshot_mapper('idnumber'))->user_id($user));
        $user->idnumber = str_repeat('é', 256);
        $this->assertNull((new snapshot_mapper('idnumber'))->user_id($user));
        $user->idnumber = str_repeat('é', 255);
        $this->assertSame(str_repeat('é', 255), (new snapshot_mapper('idnumber'))->user_id($user));
    }

    public function test_deleted_user_id_comes_from_the_event_not_the_emptied_row(): void {
        // Data of delete_user(): {user} now has username "alice@example.org.1764800000" and idnumber '';
        // the event's other keeps the originals.
        $other = ['username' => 'alice', 'email' => 'alice@example.org', 'idnumber' => 'E-0042', 'picture' => 0,
            'mnethostid' => 1];
        $this->assertSame('42', (new snapshot_mapper('id'))->deleted_user_id(42, $other));
        $this->assertSame('alice', (new snapshot_mapper('username'))->deleted_user_id(42, $other));
        $this->assertSame('E-0042', (new snapshot_mapper('idnumber'))->deleted_user_id(42, $other));
        $other['idnumber'] = '';
        $this->assertNull((new snapshot_mapper('idnumber'))->deleted_user_id(42, $other));
    }

    public function test_segment_ids(): void {
        $cohort = (object) ['id' => '7', 'idnumber' => 'sales', 'name' => 'Sales'];
        $this->assertSame('sales', (new snapshot_mapper('id', 'idnumber'))->segment_id($cohort));
        $this->assertSame('7', (new snapshot_mapper('id', 'id'))->segment_id($cohort));
        $cohort->idnumber = null;
        $this->assertNull((new snapshot_mapper('id', 'idnumber'))->segment_id($cohort));
        $this->assertSame(['name' => 'Sales'], (new snapshot_mapper())->segment_body($cohort));
    }

    public function test_unknown_mappings_are_refused(): void {
        $this->expectException(InvalidArgumentException::class);
        new snapshot_mapper('email');
    }

    public function test_field_bodies(): void {
        $mapper = new snapshot_mapper();
        $menu = (object) ['id' => 1, 'shortname' => 'level', 'name' => 'Level', 'datatype' => 'menu',
            'param1' => "Junior\r\nSenior\n\n Lead \nSenior"];
        $this->assertSame(['name' => 'Level', 'datatype' => 'MENU', 'options' => ['Junior', 'Senior', 'Lead']],
            $mapper->field_body($menu));
        $checkbox = (object) ['id' => 2, 'shortname' => 'manager', 'name' => 'Manager', 'datatype' => 'checkbox',
            'param1' => null];
        $this->assertSame(['name' => 'Manager', 'datatype' => 'CHECKBOX'], $mapper->field_body($checkbox));
        $this->assertSame('DATETIME', snapshot_mapper::field_type('datetime'));
        $this->assertSame('TEXTAREA', snapshot_mapper::field_type('textarea'));
        $this->assertSame('TEXT', snapshot_mapper::field_type('multiselect_by_someone'));
    }

    /**
     * The standard fields and field types must be the processor's (processor/rules/fields.py), which this
     * repository also holds; skipped when the plugin is checked out alone.
     */
    public function test_fields_agree_with_the_processor(): void {
        $path = __DIR__ . '/../../../../processor/rules/fields.py';
        if (!is_file($path)) {
            $this->markTestSkipped('processor/rules/fields.py is not next to the plugin');
        }
        $source = file_get_contents($path);
        preg_match('/class FieldType.*?\n\n\n/s', $source, $enum);
        preg_match_all('/^\s+([A-Z]+) = "\1"$/m', $enum[0], $types);
        $this->assertContains('MULTISELECT', $types[1], 'FieldType enum not parsed');
        foreach (snapshot_mapper::FIELD_TYPES as $type) {
            $this->assertContains($type, $types[1]);
        }
        preg_match('/STANDARD_FIELDS: Mapping\[str, FieldType\] = \{(.*?)\n\}/s', $source, $block);
        preg_match_all('/"(\w+)": _T\.(\w+)/', $block[1], $pairs, PREG_SET_ORDER);
        $expected = [];
        foreach ($pairs as [, $name, $type]) {
            $expected[$name] = $type;
        }
        $ours = [];
        foreach (snapshot_mapper::TEXT_FIELDS as $name) {
            $ours[$name] = $name === 'description' ? 'TEXTAREA' : 'TEXT';
        }
        foreach (snapshot_mapper::BOOL_FIELDS as $name) {
            $ours[$name] = 'CHECKBOX';
        }
        foreach (snapshot_mapper::TIME_FIELDS as $name) {
            $ours[$name] = 'DATETIME';
        }
        $ours['interests'] = 'MULTISELECT';
        $this->assertGreaterThan(25, count($expected), 'STANDARD_FIELDS not parsed');
        ksort($expected);
        ksort($ours);
        $this->assertSame($expected, $ours);
    }
}
