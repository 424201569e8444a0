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
 * Scheduled task that sends the outbox to the processor.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\task;

use local_segmentsync\local\curl_http_client;
use local_segmentsync\local\db_queue_store;
use local_segmentsync\local\pusher;

/**
 * Sends queued user snapshots to the ingest endpoint and cohort / field changes to the catalog endpoints.
 *
 * Cron runs one instance of a scheduled task at a time (\core\task\manager takes a lock per task), so
 * the rows are sent once and in order. A failed attempt does not throw: the pusher records it and backs
 * off on its own (60 s doubling to 1 h), so the next runs retry without flooding the log.
 */
class push_queue extends \core\task\scheduled_task {

    /**
     * Name shown to admins.
     *
     * @return string
     */
    public function get_name() {
        return get_string('taskpushqueue', 'local_segmentsync');
    }

    /**
     * Sends what is pending.
     */
    public function execute() {
        $config = get_config('local_segmentsync');
        $epoch = (string) ($config->outboxepoch ?? '');
        if ($epoch === '') {
            // Normally set by db/install.php.
            $epoch = random_string(12);
            set_config('outboxepoch', $epoch, 'local_segmentsync');
        }
        $pusher = new pusher(new db_queue_store(), new curl_http_client((int) ($config->timeout ?? 60) ?: 60), [
            'endpoint' => $config->endpoint ?? '',
            'token' => $config->token ?? '',
            'siteid' => $config->siteid ?? '',
            'epoch' => $epoch,
            'batchsize' => (int) ($config->batchsize ?? 500),
        ], null, static function (string $line): void {
            mtrace('local_segmentsync: ' . $line);
        });
        $summary = $pusher->run();
        mtrace("local_segmentsync: {$summary['status']}, {$summary['requests']} requests, " .
            "{$summary['accepted']} accepted, {$summary['rejected']} rejected" .
            ($summary['error'] ? ", {$summary['error']}" : ''));
    }
}
