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
 * Tests of the observers: events in, outbox rows out.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

use core\event\cohort_created;
use core\event\cohort_deleted;
use core\event\cohort_updated;
use core\event\user_created;
use core\event\user_deleted;
use core\event\user_info_field_created;
use core\event\user_info_field_deleted;
use core\event\user_info_field_updated;
use core\event\user_updated;
use PHPUnit\Framework\TestCase;

/**
 * Events are dispatched through the plugin's db/events.php to its observers, which read the stand-in
 * Moodle (fake $DB, profile_user_record(), tags) and write the outbox table declared in install.xml.
 */
final class ObserverTest extends TestCase {

    /** @var fake_database */
    private $db;

    protected function setUp(): void {
        $this->db = standin_reset();
        $this->db->seed('user', [
            'id' => 42, 'auth' => 'manual', 'confirmed' => '1', 'deleted' => '0', 'suspended' => '0', 'username' => 'alice',
            'password' => 'hash', 'idnumber' => 'E-42', 'firstname' => 'Alice', 'lastname' => 'Liddell',
            'email' => 'alice@example.org', 'department' => 'Sales', 'city' => 'Oxford', 'country' => 'GB',
            'lastaccess' => '1764790000', 'timecreated' => '1764600000', 'description' => null,
        ]);
        $this->db->seed('user_info_field', ['id' => 1, 'shortname' => 'level', 'name' => 'Level', 'datatype' => 'menu',
            'param1' => "Junior\nSenior", 'defaultdata' => 'Junior', 'sortorder' => 1]);
        $this->db->seed('user_info_field', ['id' => 2, 'shortname' => 'manager', 'name' => 'Manager',
            'datatype' => 'checkbox', 'param1' => null, 'defaultdata' => '0', 'sortorder' => 2]);
        $this->db->seed('user_info_field', ['id' => 3, 'shortname' => 'hired', 'name' => 'Hired', 'datatype' => 'datetime',
            'param1' => '2000', 'defaultdata' => '0', 'sortorder' => 3]);
        $this->db->seed('user_info_field', ['id' => 4, 'shortname' => 'bio', 'name' => 'Bio', 'datatype' => 'textarea',
            'param1' => null, 'defaultdata' => '', 'sortorder' => 4]);
        $this->db->seed('user_info_data', ['id' => 1, 'userid' => 42, 'fieldid' => 1, 'data' => 'Senior']);
        $this->db->seed('user_info_data', ['id' => 2, 'userid' => 42, 'fieldid' => 3, 'data' => '1700000000']);
        $this->db->seed('user_info_data', ['id' => 3, 'userid' => 42, 'fieldid' => 4, 'data' => '<p>Long bio</p>']);
        core_tag_tag::$tags['core/user/42'] = ['Chess', 'R&D'];
        // Any HTTP from an observer fails the test: curl::$transport is null.
    }

    /**
     * The outbox rows, in order.
     *
     * @return stdClass[]
     */
    private function queue(): array {
        return array_values($this->db->get_records('local_segmentsync_queue', null, 'id ASC'));
    }

    public function test_db_events_declares_nine_internal_observers(): void {
        $observers = standin_event_manager::observers();
        $expected = ['user_created', 'user_updated', 'user_deleted', 'cohort_created', 'cohort_updated', 'cohort_deleted',
            'user_info_field_created', 'user_info_field_updated', 'user_info_field_deleted'];
        $this->assertSame(array_map(static function ($e) {
            return '\\core\\event\\' . $e;
        }, $expected), array_column($observers, 'eventname'));
        foreach ($observers as $observer) {
            // Internal observers run inside the triggering transaction (lib/classes/event/manager.php).
            $this->assertNotSame(false, $observer['internal'] ?? true, $observer['eventname']);
            $this->assertTrue(is_callable($observer['callback']), $observer['callback']);
        }
    }

    public function test_user_updated_queues_a_full_typed_snapshot(): void {
        user_updated::create_from_userid(42)->trigger();
        [$row] = $this->queue();
        $this->assertSame(['user', 'upsert', '42', 'USER_UPDATED', 'pending', 42],
            [$row->kind, $row->op, $row->targetid, $row->eventtype, $row->status, (int) $row->userid]);
        $profile = json_decode($row->payload, true);
        $this->assertSame('Sales', $profile['department']);
        $this->assertSame(1764790000, $profile['lastaccess']);
        $this->assertFalse($profile['suspended']);
        $this->assertSame(['Chess', 'R&D'], $profile['interests'], 'interests as plain text, not HTML');
        $this->assertSame('Senior', $profile['profile_field_level']);
        $this->assertFalse($profile['profile_field_manager'], 'no data: the default, as a boolean');
        $this->assertSame(1700000000, $profile['profile_field_hired']);
        $this->assertSame('<p>Long bio</p>', $profile['profile_field_bio'], 'textarea fields are in the snapshot too');
        $this->assertArrayNotHasKey('password', $profile);
        $this->assertGreaterThan(1700000000000, (int) $row->occurredat, 'epoch milliseconds');
        $this->assertSame([], curl::$sent);
    }

    public function test_user_created_is_a_created_snapshot(): void {
        user_created::create_from_userid(42)->trigger();
        $this->assertSame('USER_CREATED', $this->queue()[0]->eventtype);
    }

    public function test_user_deleted_uses_the_original_username(): void {
        set_config('useridmapping', 'username', 'local_segmentsync');
        // What delete_user() leaves in {user} before it triggers the event.
        $this->db->update_record('user', (object) ['id' => 42, 'deleted' => '1', 'username' => 'alice@example.org.1764800000',
            'idnumber' => '', 'email' => md5('alice')]);
        user_deleted::create(['objectid' => 42, 'other' => ['username' => 'alice', 'email' => 'alice@example.org',
            'idnumber' => 'E-42', 'picture' => 0, 'mnethostid' => 1]])->trigger();
        [$row] = $this->queue();
        $this->assertSame(['user', 'delete', 'alice', 'USER_DELETED', null],
            [$row->kind, $row->op, $row->targetid, $row->eventtype, $row->payload]);
    }

    public function test_an_update_of_a_deleted_user_is_a_deletion(): void {
        $this->db->update_record('user', (object) ['id' => 42, 'deleted' => '1']);
        user_updated::create_from_userid(42)->trigger();
        [$row] = $this->queue();
        $this->assertSame(['delete', '42'], [$row->op, $row->targetid]);
    }

    public function test_an_unmappable_user_is_kept_as_rejected_with_the_reason(): void {
        set_config('useridmapping', 'idnumber', 'local_segmentsync');
        $this->db->update_record('user', (object) ['id' => 42, 'idnumber' => '']);
        user_updated::create_from_userid(42)->trigger();
        [$row] = $this->queue();
        $this->assertSame(['rejected', 'NO_USER_ID'], [$row->status, $row->errorcode]);
        $this->assertStringContainsString('user 42 has an empty or too long idnumber', $row->errormessage);
    }

    public function test_cohorts_become_segments(): void {
        $cohort = (object) ['id' => 7, 'contextid' => 1, 'name' => 'Sales', 'idnumber' => 'sales', 'component' => ''];
        $this->db->seed('cohort', $cohort);
        $event = cohort_created::create(['objectid' => 7]);
        $event->add_record_snapshot('cohort', $cohort);
        $event->trigger();
        // cohort_update_cohort() adds no snapshot: the observer reads the updated row.
        $this->db->update_record('cohort', (object) ['id' => 7, 'name' => 'Sales team']);
        cohort_updated::create(['objectid' => 7])->trigger();
        // A cohort without idnumber is not a segment.
        $this->db->seed('cohort', ['id' => 8, 'contextid' => 1, 'name' => 'Misc', 'idnumber' => null]);
        cohort_created::create(['objectid' => 8])->trigger();
        // cohort_delete_cohort() deletes the row, then triggers with the old row as snapshot.
        $this->db->delete_records('cohort', ['id' => 7]);
        $deleted = cohort_deleted::create(['objectid' => 7]);
        $deleted->add_record_snapshot('cohort', $cohort);
        $deleted->trigger();

        $rows = $this->queue();
        $this->assertSame([['segment', 'upsert', 'sales', '{"name":"Sales"}'], ['segment', 'upsert', 'sales',
            '{"name":"Sales team"}'], ['segment', 'delete', 'sales', null]], array_map(static function ($r) {
                return [$r->kind, $r->op, $r->targetid, $r->payload];
            }, $rows));
        $this->assertSame(0, (int) $rows[0]->userid);
    }

    public function test_segment_id_mapping_by_cohort_id(): void {
        set_config('segmentidmapping', 'id', 'local_segmentsync');
        $this->db->seed('cohort', ['id' => 8, 'contextid' => 1, 'name' => 'Misc', 'idnumber' => null]);
        cohort_created::create(['objectid' => 8])->trigger();
        $this->assertSame('8', $this->queue()[0]->targetid);
    }

    public function test_profile_fields_become_field_definitions(): void {
        $field = (object) ['id' => 5, 'shortname' => 'vip', 'name' => 'VIP', 'datatype' => 'checkbox', 'param1' => null,
            'defaultdata' => '0', 'sortorder' => 5];
        // A first snapshot reads the field definitions (and caches them).
        user_updated::create_from_userid(42)->trigger();
        $this->db->seed('user_info_field', $field);
        $this->db->seed('user_info_data', ['id' => 4, 'userid' => 42, 'fieldid' => 5, 'data' => '1']);
        user_info_field_created::create_from_field($field)->trigger();
        // After the field event, snapshots type the new field (the cache was reset).
        user_updated::create_from_userid(42)->trigger();
        $menu = $this->db->get_record('user_info_field', ['id' => 1]);
        $menu->param1 = "Junior\nSenior\nLead";
        user_info_field_updated::create_from_field($menu)->trigger();
        user_info_field_deleted::create_from_field($field)->trigger();

        $rows = $this->queue();
        $this->assertSame(['field', 'upsert', 'vip', '{"name":"VIP","datatype":"CHECKBOX"}'],
            [$rows[1]->kind, $rows[1]->op, $rows[1]->targetid, $rows[1]->payload]);
        $this->assertTrue(json_decode($rows[2]->payload, true)['profile_field_vip']);
        $this->assertSame('{"name":"Level","datatype":"MENU","options":["Junior","Senior","Lead"]}', $rows[3]->payload);
        $this->assertSame(['field', 'delete', 'vip', null], [$rows[4]->kind, $rows[4]->op, $rows[4]->targetid,
            $rows[4]->payload]);
    }

    public function test_nothing_is_written_before_the_plugin_is_installed(): void {
        unset_config('version', 'local_segmentsync');
        user_updated::create_from_userid(42)->trigger();
        $this->assertSame([], $this->db->writes);
    }

    public function test_a_field_event_without_snapshot_uses_the_event_data(): void {
        $event = user_info_field_deleted::create(['objectid' => 99,
            'other' => ['shortname' => 'gone', 'name' => 'Gone', 'datatype' => 'text']]);
        $event->trigger();
        $this->assertSame(['delete', 'gone'], [$this->queue()[0]->op, $this->queue()[0]->targetid]);
    }
}
