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
 * Tests of the sender: settlement by the processor's answers, retries and back-off.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

use local_segmentsync\local\db_queue_store;
use local_segmentsync\local\pusher;
use PHPUnit\Framework\TestCase;

require_once(__DIR__ . '/BatcherTest.php');

/**
 * The pusher over the real table store (on the stand-in $DB) against a double of the processor.
 */
final class PusherTest extends TestCase {

    /** @var fake_database */
    private $db;

    /** @var fake_processor */
    private $processor;

    /** @var int the test's clock, epoch seconds */
    private $now = 1764800000;

    protected function setUp(): void {
        $this->db = standin_reset();
        $this->processor = new fake_processor();
    }

    /**
     * A pusher configured for the double.
     *
     * @param array $config overrides
     * @return pusher
     */
    private function pusher(array $config = []): pusher {
        return new pusher(new db_queue_store(), $this->processor, $config + [
            'endpoint' => 'https://processor.example.org/',
            'token' => 'TOKEN',
            'siteid' => 'site-1',
            'epoch' => 'EP',
            'batchsize' => 500,
        ], function (): int {
            return $this->now;
        });
    }

    /**
     * Queues user rows 1..n (as the observers would) and returns their ids.
     *
     * @param int $n
     * @param int $from first user id
     * @return int[]
     */
    private function queue_users(int $n, int $from = 1): array {
        $ids = [];
        for ($i = $from; $i < $from + $n; $i++) {
            $row = BatcherTest::user_row($i);
            unset($row->id);
            $ids[] = $this->db->insert_record('local_segmentsync_queue', $row);
        }
        return $ids;
    }

    /**
     * Rows left in the table, by status.
     *
     * @param string $status
     * @return stdClass[]
     */
    private function rows(string $status): array {
        return array_values($this->db->get_records('local_segmentsync_queue', ['status' => $status], 'id ASC'));
    }

    public function test_accepted_rows_are_deleted_rejected_ones_kept_with_the_reason(): void {
        $this->queue_users(1200);
        $this->processor->reject['7'] = ['INVALID_VALUE', 'profile_field_level: "Boss" is not an option'];
        $summary = $this->pusher()->run();
        $this->assertSame(['status' => 'sent', 'requests' => 3, 'accepted' => 1199, 'rejected' => 1, 'error' => null],
            $summary);
        $this->assertSame([], $this->rows('pending'));
        [$rejected] = $this->rows('rejected');
        $this->assertSame('7', $rejected->targetid);
        $this->assertSame('INVALID_VALUE', $rejected->errorcode);
        $this->assertSame('$.records[6].profile', $rejected->errorpath);
        $this->assertSame('profile_field_level: "Boss" is not an option', $rejected->errormessage);
        $this->assertSame(['pending' => 0, 'rejected' => 1], (new db_queue_store())->counts());
        // Order kept across requests.
        $this->assertSame(array_map('strval', array_values(array_diff(range(1, 1200), [7]))),
            array_column($this->processor->ingested, 'user_id'));
        // A rejected row is not sent again.
        $this->assertSame('idle', $this->pusher()->run()['status']);
        $this->assertCount(3, $this->processor->requests);
    }

    public function test_results_are_matched_by_event_id(): void {
        $this->queue_users(5);
        $this->processor->reverse = true;
        $this->processor->reject['2'] = ['INVALID_VALUE', 'no'];
        $this->pusher()->run();
        $this->assertSame(['2'], array_column($this->rows('rejected'), 'targetid'));
        $this->assertSame([], $this->rows('pending'));
    }

    public function test_an_incomplete_answer_keeps_the_unanswered_rows_and_backs_off(): void {
        $this->queue_users(10);
        $this->processor->omitresults = 3;
        $summary = $this->pusher()->run();
        $this->assertSame('failed', $summary['status']);
        $this->assertStringStartsWith('INCOMPLETE_RESPONSE', $summary['error']);
        $this->assertSame(['8', '9', '10'], array_column($this->rows('pending'), 'targetid'));
        $this->assertSame((string) ($this->now + 60), get_config('local_segmentsync', 'state_nextattempt'));
        // They are sent again once the back-off has passed, with the same event ids (the processor
        // had taken them; delivery is at least once and it de-duplicates by event_id), and only they.
        $first = array_column(array_slice($this->processor->ingested, 7), 'event_id');
        $this->now += 60;
        $this->assertSame('sent', $this->pusher()->run()['status']);
        $this->assertSame(['8', '9', '10'], array_column(array_slice($this->processor->ingested, 10), 'user_id'));
        $this->assertSame($first, array_column(array_slice($this->processor->ingested, 10), 'event_id'));
        $this->assertSame([], $this->rows('pending'));
    }

    public function test_unavailable_processor_nothing_settled_retry_after_honoured(): void {
        $this->queue_users(3);
        $this->processor->script[] = fake_processor::error(503, 'BROKER_UNAVAILABLE', 'Kafka is down', '$');
        $this->processor->script[0][2]['Retry-After'] = '300';
        $summary = $this->pusher()->run();
        $this->assertSame('failed', $summary['status']);
        $this->assertStringContainsString('BROKER_UNAVAILABLE', $summary['error']);
        $this->assertCount(3, $this->rows('pending'));
        $this->assertSame((string) ($this->now + 300), get_config('local_segmentsync', 'state_nextattempt'));
        $this->assertSame($summary['error'], get_config('local_segmentsync', 'state_lasterror'));
        // Before the time: no request at all.
        $this->now += 299;
        $this->assertSame('waiting', $this->pusher()->run()['status']);
        $this->assertCount(1, $this->processor->requests);
        // After: sent, and the failure state is cleared.
        $this->now += 1;
        $this->assertSame('sent', $this->pusher()->run()['status']);
        $this->assertSame([], $this->rows('pending'));
        $this->assertFalse(get_config('local_segmentsync', 'state_failures'));
        $this->assertFalse(get_config('local_segmentsync', 'state_lasterror'));
    }

    public function test_backoff_doubles_up_to_an_hour(): void {
        $this->assertSame([60, 120, 240, 480, 960, 1920, 3600, 3600], array_map(static function ($n) {
            return pusher::backoff($n);
        }, range(1, 8)));
        $this->assertSame(600, pusher::backoff(1, 600));
        $this->assertSame(120, pusher::retry_after(gmdate('D, d M Y H:i:s', 1000120) . ' GMT', 1000000));
        $this->assertNull(pusher::retry_after('soon', 0));

        $this->queue_users(1);
        $delays = [];
        for ($i = 0; $i < 4; $i++) {
            $this->processor->script[] = ['errno' => 7, 'error' => 'Failed to connect'];
            $this->pusher()->run();
            $next = (int) get_config('local_segmentsync', 'state_nextattempt');
            $delays[] = $next - $this->now;
            $this->now = $next;
        }
        $this->assertSame([60, 120, 240, 480], $delays);
    }

    public function test_a_failed_batch_stops_the_run_so_order_is_kept(): void {
        $this->queue_users(600);
        $this->db->insert_record('local_segmentsync_queue', BatcherTest::catalog_row(0, 'segment', 'upsert', 'sales',
            ['name' => 'Sales']));
        $this->processor->script[] = ['errno' => 28, 'error' => 'Operation timed out'];
        $summary = $this->pusher()->run();
        $this->assertStringStartsWith('NETWORK: could not reach https://processor.example.org/sites/site-1/ingest/users',
            $summary['error']);
        $this->assertStringContainsString('curlsecurityallowedport', $summary['error']);
        $this->assertCount(1, $this->processor->requests, 'nothing after the failed batch may be sent');
        $this->assertCount(601, $this->rows('pending'));
    }

    public function test_bad_token_is_reported_not_blamed_on_records(): void {
        $this->queue_users(2);
        $summary = $this->pusher(['token' => 'WRONG'])->run();
        $this->assertStringStartsWith('AUTH: ', $summary['error']);
        $this->assertStringContainsString('UNAUTHORIZED', $summary['error']);
        $this->assertCount(2, $this->rows('pending'));
        $this->assertSame([], $this->rows('rejected'));
    }

    public function test_catalog_writes(): void {
        $store = $this->db;
        $store->insert_record('local_segmentsync_queue', BatcherTest::catalog_row(0, 'field', 'upsert', 'level',
            ['name' => 'Level', 'datatype' => 'MENU', 'options' => ['Junior', 'Senior']]));
        $store->insert_record('local_segmentsync_queue', BatcherTest::catalog_row(0, 'field', 'upsert', 'weird',
            ['name' => 'Weird', 'datatype' => 'BLOB']));
        $store->insert_record('local_segmentsync_queue', BatcherTest::catalog_row(0, 'segment', 'delete', 'sales'));
        $summary = $this->pusher()->run();
        $this->assertSame(['sent', 2, 1], [$summary['status'], $summary['accepted'], $summary['rejected']]);
        $this->assertSame([['PUT', '/sites/site-1/fields/level'], ['DELETE', '/sites/site-1/segments/sales']],
            array_map(static function ($c) {
                return [$c[0], $c[1]];
            }, $this->processor->catalog));
        [$rejected] = $this->rows('rejected');
        $this->assertSame(['weird', 'INVALID_FIELD', '$.datatype'],
            [$rejected->targetid, $rejected->errorcode, $rejected->errorpath]);
    }

    public function test_a_wrong_endpoint_is_a_failure_not_a_rejection(): void {
        $this->db->insert_record('local_segmentsync_queue', BatcherTest::catalog_row(0, 'segment', 'upsert', 'sales',
            ['name' => 'Sales']));
        $summary = $this->pusher(['endpoint' => 'https://processor.example.org/wrong'])->run();
        $this->assertStringStartsWith('HTTP_404', $summary['error']);
        $this->assertCount(1, $this->rows('pending'));
    }

    public function test_not_configured_sends_nothing_and_says_what_is_missing(): void {
        $this->queue_users(1);
        $summary = $this->pusher(['token' => '', 'siteid' => ' '])->run();
        $this->assertSame('notconfigured', $summary['status']);
        $this->assertStringContainsString('token, siteid', $summary['error']);
        $this->assertSame([], $this->processor->requests);
        $this->assertSame($summary['error'], get_config('local_segmentsync', 'state_lasterror'));
    }

    public function test_one_run_is_bounded(): void {
        $this->queue_users(2500);
        $summary = $this->pusher()->run(1000);
        $this->assertSame(1000, $summary['accepted']);
        $this->assertCount(1500, $this->rows('pending'));
    }

    public function test_requests_carry_the_token_and_json(): void {
        $this->queue_users(1);
        $this->pusher()->run();
        $request = $this->processor->requests[0];
        $this->assertSame(['POST', '/sites/site-1/ingest/users'], [$request['method'], $request['path']]);
        $this->assertContains('Authorization: Bearer TOKEN', $request['headers']);
        $this->assertContains('Content-Type: application/json', $request['headers']);
    }
}
