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
 * Tests of the outbox batching.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

use local_segmentsync\local\batcher;
use PHPUnit\Framework\TestCase;

/**
 * Requests never exceed the endpoint's limits (500 records, 256 KiB) and keep the order of the changes.
 */
final class BatcherTest extends TestCase {

    /**
     * A pending user row.
     *
     * @param int $id
     * @param array|null $profile null for a deletion
     * @return stdClass
     */
    public static function user_row(int $id, ?array $profile = ['department' => 'Sales']): stdClass {
        return (object) [
            'id' => $id, 'kind' => 'user', 'op' => $profile === null ? 'delete' : 'upsert', 'objectid' => $id,
            'userid' => $id, 'targetid' => (string) $id, 'eventtype' => $profile === null ? 'USER_DELETED' : 'USER_UPDATED',
            'payload' => $profile === null ? null : json_encode((object) $profile), 'occurredat' => 1764800000000 + $id,
            'status' => 'pending',
        ];
    }

    /**
     * A pending catalog row.
     *
     * @param int $id
     * @param string $kind segment or field
     * @param string $op
     * @param string $target
     * @param array|null $body
     * @return stdClass
     */
    public static function catalog_row(int $id, string $kind, string $op, string $target, ?array $body = null): stdClass {
        return (object) [
            'id' => $id, 'kind' => $kind, 'op' => $op, 'objectid' => 1, 'userid' => 0, 'targetid' => $target,
            'eventtype' => null, 'payload' => $body === null ? null : json_encode($body), 'occurredat' => 1,
            'status' => 'pending',
        ];
    }

    /**
     * The records of an ingest step, decoded.
     *
     * @param array $step
     * @return array
     */
    private static function records(array $step): array {
        return json_decode($step['body'], true, 512, JSON_THROW_ON_ERROR)['records'];
    }

    public function test_at_most_500_records_per_request_in_order(): void {
        $rows = [];
        for ($i = 1; $i <= 1201; $i++) {
            $rows[] = self::user_row($i);
        }
        $steps = (new batcher('site-1', 'EPOCH'))->plan($rows);
        $this->assertSame(['ingest', 'ingest', 'ingest'], array_column($steps, 'type'));
        $this->assertSame([500, 500, 201], array_map(static function ($s) {
            return count($s['rows']);
        }, $steps));
        $ids = [];
        foreach ($steps as $step) {
            foreach (self::records($step) as $index => $record) {
                $this->assertSame('moodle-EPOCH-' . $step['rows'][$index]->id, $record['event_id']);
                $ids[] = (int) $record['user_id'];
            }
        }
        $this->assertSame(range(1, 1201), $ids);
    }

    public function test_records_follow_the_contract(): void {
        $rows = [self::user_row(1, []), self::user_row(2, null), self::user_row(3, ['interests' => ['a'], 'suspended' => false])];
        [$step] = (new batcher('s', 'E'))->plan($rows);
        $body = $step['body'];
        $this->assertStringContainsString('"profile":{}', $body, 'an empty profile must stay a JSON object');
        $records = self::records($step);
        $this->assertSame(['op' => 'upsert', 'user_id' => '1', 'event_id' => 'moodle-E-1', 'occurred_at' => 1764800000001,
            'event_type' => 'USER_UPDATED', 'profile' => []], $records[0]);
        $this->assertSame(['op' => 'delete', 'user_id' => '2', 'event_id' => 'moodle-E-2', 'occurred_at' => 1764800000002],
            $records[1]);
        $this->assertSame(['interests' => ['a'], 'suspended' => false], $records[2]['profile']);
    }

    public function test_bodies_stay_within_256_kib(): void {
        // About 100 KB per snapshot: two fit in 256 KiB, three do not.
        $rows = [];
        for ($i = 1; $i <= 7; $i++) {
            $rows[] = self::user_row($i, ['description' => str_repeat('x', 100000)]);
        }
        $steps = (new batcher('s', 'E'))->plan($rows);
        $this->assertSame([2, 2, 2, 1], array_map(static function ($s) {
            return count($s['rows']);
        }, $steps));
        foreach ($steps as $step) {
            $this->assertLessThanOrEqual(batcher::MAX_BYTES, strlen($step['body']));
            $this->assertIsArray(json_decode($step['body'], true));
        }
    }

    public function test_body_of_exactly_the_limit_is_one_request(): void {
        $batcher = new batcher('s', 'E');
        // A record with a description of n bytes is $base + n bytes (ids of the same length).
        $base = strlen($batcher->record(self::user_row(1, ['description' => ''])));
        // Body of two records: '{"records":[' + a + ',' + b + ']}'.
        $total = batcher::MAX_BYTES - strlen('{"records":[,]}') - 2 * $base;
        $a = self::user_row(1, ['description' => str_repeat('y', intdiv($total, 2))]);
        $b = self::user_row(2, ['description' => str_repeat('y', $total - intdiv($total, 2))]);
        $steps = $batcher->plan([$a, $b]);
        $this->assertCount(1, $steps);
        $this->assertSame(batcher::MAX_BYTES, strlen($steps[0]['body']));
        // One byte more: two requests.
        $c = self::user_row(2, ['description' => str_repeat('y', $total - intdiv($total, 2) + 1)]);
        $this->assertCount(2, $batcher->plan([$a, $c]));
    }

    public function test_a_snapshot_too_large_for_any_request_is_rejected_not_dropped(): void {
        $rows = [self::user_row(1), self::user_row(2, ['description' => str_repeat('z', batcher::MAX_BYTES)]), self::user_row(3)];
        $steps = (new batcher('s', 'E'))->plan($rows);
        $this->assertSame(['invalid', 'ingest'], array_column($steps, 'type'));
        $this->assertSame('LIMIT_EXCEEDED', $steps[0]['code']);
        $this->assertSame(2, $steps[0]['row']->id);
        $this->assertSame(['1', '3'], array_column(self::records($steps[1]), 'user_id'));
    }

    public function test_a_corrupt_payload_is_rejected(): void {
        $row = self::user_row(1);
        $row->payload = '{"department": ';
        $steps = (new batcher('s', 'E'))->plan([$row]);
        $this->assertSame('invalid', $steps[0]['type']);
        $this->assertSame('CORRUPT_ROW', $steps[0]['code']);
    }

    public function test_catalog_rows_split_batches_and_keep_order(): void {
        $rows = [
            self::user_row(1),
            self::catalog_row(2, 'field', 'upsert', 'level', ['name' => 'Level', 'datatype' => 'MENU', 'options' => ['A']]),
            self::user_row(3),
            self::user_row(4),
            self::catalog_row(5, 'segment', 'delete', 'sales team/2'),
            self::catalog_row(6, 'segment', 'upsert', 'hr', ['name' => 'HR']),
        ];
        $steps = (new batcher('site one', 'E'))->plan($rows);
        $this->assertSame(['ingest', 'catalog', 'ingest', 'catalog', 'catalog'], array_column($steps, 'type'));
        $this->assertSame(['PUT', '/sites/site%20one/fields/level'], [$steps[1]['method'], $steps[1]['path']]);
        $this->assertSame(['name' => 'Level', 'datatype' => 'MENU', 'options' => ['A']], json_decode($steps[1]['body'], true));
        $this->assertSame([3, 4], array_map('intval', array_column(self::records($steps[2]), 'user_id')));
        $this->assertSame(['DELETE', '/sites/site%20one/segments/sales%20team%2F2', null],
            [$steps[3]['method'], $steps[3]['path'], $steps[3]['body']]);
        $this->assertSame('PUT', $steps[4]['method']);
        $this->assertSame('/sites/site%20one/ingest/users', (new batcher('site one', 'E'))->ingest_path());
    }

    public function test_smaller_batch_size_setting(): void {
        $rows = [];
        for ($i = 1; $i <= 5; $i++) {
            $rows[] = self::user_row($i);
        }
        $this->assertCount(3, (new batcher('s', 'E', 2))->plan($rows));
        // The setting cannot raise the endpoint's limit.
        $rows = [];
        for ($i = 1; $i <= 501; $i++) {
            $rows[] = self::user_row($i);
        }
        $this->assertCount(2, (new batcher('s', 'E', 10000))->plan($rows));
    }
}
