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
 * Tests of the HTTP client over Moodle's curl class, and of the whole path from event to processor.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

use core\event\cohort_created;
use core\event\user_deleted;
use core\event\user_updated;
use local_segmentsync\local\curl_http_client;
use local_segmentsync\task\push_queue;
use PHPUnit\Framework\TestCase;

/**
 * curl_http_client against the curl stand-in, and observer -> table -> scheduled task -> curl -> processor double.
 */
final class CurlEndToEndTest extends TestCase {

    /** @var fake_processor */
    private $processor;

    /** @var fake_database */
    private $db;

    protected function setUp(): void {
        $this->db = standin_reset();
        $this->processor = new fake_processor();
        curl::$transport = [$this->processor, 'handle'];
    }

    public function test_post_put_delete_through_moodle_curl(): void {
        $client = new curl_http_client(15);
        $headers = ['Authorization: Bearer TOKEN', 'Content-Type: application/json'];
        $post = $client->request('POST', 'https://p.example.org/sites/site-1/ingest/users', $headers, '{"records":[]}');
        $put = $client->request('PUT', 'https://p.example.org/sites/site-1/segments/sales', $headers, '{"name":"Sales"}');
        $delete = $client->request('DELETE', 'https://p.example.org/sites/site-1/segments/sales', [$headers[0]], null);
        $this->assertSame([200, 202, 202], [$post->status, $put->status, $delete->status]);
        $this->assertSame('application/json', $post->header('content-type'));
        $this->assertSame(['POST', 'PUT', 'DELETE'], array_column(curl::$sent, 'method'));
        $this->assertSame('{"name":"Sales"}', curl::$sent[1]['body']);
        $this->assertSame([['PUT', '/sites/site-1/segments/sales', '{"name":"Sales"}'],
            ['DELETE', '/sites/site-1/segments/sales', null]], $this->processor->catalog);
        // delete() sets an anonymous CURLOPT_USERPWD; our Bearer header must be the one that is sent.
        $this->assertSame(['Authorization: Bearer TOKEN'], preg_grep('/^Authorization:/', curl::$sent[2]['headers']));
        $this->assertSame(15, curl::$sent[0]['options']['CURLOPT_TIMEOUT']);
        $this->assertSame(0, curl::$sent[0]['options']['CURLOPT_FOLLOWLOCATION']);
    }

    public function test_network_errors_and_blocked_urls_have_no_status(): void {
        $client = new curl_http_client();
        $this->processor->script[] = ['errno' => 7, 'error' => 'Failed to connect to p.example.org port 6066'];
        $failed = $client->request('POST', 'https://p.example.org/x', [], '{}');
        $this->assertSame([0, 'Failed to connect to p.example.org port 6066'], [$failed->status, $failed->error]);
        curl::$blockedhosts = ['10.0.0.5'];
        $blocked = $client->request('POST', 'http://10.0.0.5:6066/x', [], '{}');
        $this->assertSame([0, 'The URL is blocked.'], [$blocked->status, $blocked->error]);
    }

    public function test_retry_after_header_is_read_case_insensitively(): void {
        $this->processor->script[] = [503, '{"code":"BROKER_UNAVAILABLE","message":"down","path":"$"}',
            ['Retry-After' => '30']];
        $response = (new curl_http_client())->request('POST', 'https://p.example.org/x', [], '{}');
        $this->assertSame('30', $response->header('retry-after'));
    }

    /**
     * Plugin settings as an admin would set them.
     */
    private function configure(): void {
        set_config('endpoint', 'https://processor.example.org', 'local_segmentsync');
        set_config('token', 'TOKEN', 'local_segmentsync');
        set_config('siteid', 'site-1', 'local_segmentsync');
        set_config('outboxepoch', 'EP0CH', 'local_segmentsync');
    }

    public function test_changes_reach_the_processor_in_order_and_leave_the_queue(): void {
        $this->configure();
        $this->db->seed('user', ['id' => 42, 'deleted' => '0', 'suspended' => '0', 'confirmed' => '1', 'username' => 'alice',
            'idnumber' => '', 'email' => 'a@example.org', 'firstname' => 'Alice', 'lastname' => 'L', 'department' => 'Sales',
            'auth' => 'manual', 'lastaccess' => '0']);
        $this->db->seed('user_info_field', ['id' => 1, 'shortname' => 'level', 'name' => 'Level', 'datatype' => 'menu',
            'param1' => "Junior\nSenior", 'defaultdata' => 'Junior']);
        $cohort = (object) ['id' => 7, 'name' => 'Sales', 'idnumber' => 'sales'];
        $this->db->seed('cohort', $cohort);

        cohort_created::create(['objectid' => 7])->trigger();
        user_updated::create_from_userid(42)->trigger();
        user_deleted::create(['objectid' => 42, 'other' => ['username' => 'alice', 'email' => 'a@example.org',
            'idnumber' => '', 'picture' => 0, 'mnethostid' => 1]])->trigger();
        $this->assertSame([], curl::$sent, 'observers never call the network');

        (new push_queue())->execute();

        $this->assertSame([], $this->db->get_records('local_segmentsync_queue'));
        $this->assertSame([['PUT', '/sites/site-1/segments/sales', '{"name":"Sales"}']], $this->processor->catalog);
        [$upsert, $delete] = $this->processor->ingested;
        $this->assertSame(['upsert', '42', 'USER_UPDATED'], [$upsert['op'], $upsert['user_id'], $upsert['event_type']]);
        $this->assertSame('Sales', $upsert['profile']['department']);
        $this->assertSame('Junior', $upsert['profile']['profile_field_level']);
        $this->assertStringStartsWith('moodle-EP0CH-', $upsert['event_id']);
        $this->assertSame(['delete', '42'], [$delete['op'], $delete['user_id']]);
        $this->assertArrayNotHasKey('profile', $delete);
        $this->assertSame(['PUT', 'POST'], array_column(curl::$sent, 'method'));
        $this->assertStringContainsString('sent, 2 requests, 3 accepted, 0 rejected',
            end($GLOBALS['standin_mtrace']));
    }

    public function test_a_blocked_processor_url_is_reported_and_nothing_is_lost(): void {
        $this->configure();
        set_config('endpoint', 'http://10.0.0.5:6066', 'local_segmentsync');
        curl::$blockedhosts = ['10.0.0.5'];
        $this->db->seed('user', ['id' => 42, 'deleted' => '0', 'username' => 'alice']);
        user_updated::create_from_userid(42)->trigger();
        (new push_queue())->execute();
        $this->assertCount(1, $this->db->get_records('local_segmentsync_queue', ['status' => 'pending']));
        $error = get_config('local_segmentsync', 'state_lasterror');
        $this->assertStringStartsWith('NETWORK: could not reach http://10.0.0.5:6066/sites/site-1/ingest/users: The URL is blocked.',
            $error);
    }

    public function test_the_task_creates_a_missing_outbox_epoch(): void {
        $this->configure();
        unset_config('outboxepoch', 'local_segmentsync');
        (new push_queue())->execute();
        $this->assertMatchesRegularExpression('/^[A-Za-z0-9]{12}$/', get_config('local_segmentsync', 'outboxepoch'));
    }
}
