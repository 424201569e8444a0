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
 * Sends the outbox to the processor.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * One run of the sender: sends pending rows in order and settles each by the processor's answer.
 *
 * - ACCEPTED (or 2xx on the catalog endpoints): the row is deleted.
 * - REJECTED (or a 4xx with the processor's error body on a catalog endpoint): the row is kept as
 *   rejected with code, path and message; it is counted on the admin status page.
 * - No usable answer (network error, time-out, 5xx, 429, 401/403, a malformed or incomplete answer):
 *   nothing more is settled, the run stops so the order of changes is kept, and the next attempt waits
 *   60 s, 120 s, 240 s, ... at most 1 h (or the server's Retry-After, if longer).
 */
final class pusher {

    /** @var int Rows read from the table at a time. */
    public const FETCH = 1000;

    /** @var int First back-off, seconds. */
    public const BASE_BACKOFF = 60;

    /** @var int Longest back-off, seconds. */
    public const MAX_BACKOFF = 3600;

    /** @var queue_store */
    private $store;

    /** @var http_client */
    private $http;

    /** @var string */
    private $endpoint;

    /** @var string */
    private $token;

    /** @var string */
    private $siteid;

    /** @var batcher */
    private $batcher;

    /** @var callable(): int epoch seconds */
    private $now;

    /** @var callable(string): void */
    private $log;

    /** @var array the current run's counters */
    private $summary;

    /**
     * @param queue_store $store
     * @param http_client $http
     * @param array $config endpoint (base URL), token, siteid, epoch, batchsize
     * @param callable|null $now returns epoch seconds (default time())
     * @param callable|null $log receives progress lines (default: none)
     */
    public function __construct(queue_store $store, http_client $http, array $config, ?callable $now = null,
            ?callable $log = null) {
        $this->store = $store;
        $this->http = $http;
        $this->endpoint = rtrim(trim((string) ($config['endpoint'] ?? '')), '/');
        $this->token = trim((string) ($config['token'] ?? ''));
        $this->siteid = trim((string) ($config['siteid'] ?? ''));
        $batchsize = (int) ($config['batchsize'] ?? batcher::MAX_RECORDS);
        $this->batcher = new batcher($this->siteid, (string) ($config['epoch'] ?? ''),
            $batchsize > 0 ? $batchsize : batcher::MAX_RECORDS);
        $this->now = $now ?? 'time';
        $this->log = $log ?? static function (string $line): void {
        };
    }

    /**
     * Sends what is pending, at most $maxrows rows.
     *
     * @param int $maxrows bound on one run, so a huge backlog does not hold the cron for long
     * @return array status (idle|sent|waiting|failed|notconfigured), requests, accepted, rejected, error
     */
    public function run(int $maxrows = 50000): array {
        $this->summary = ['status' => 'idle', 'requests' => 0, 'accepted' => 0, 'rejected' => 0, 'error' => null];
        $missing = [];
        foreach (['endpoint' => $this->endpoint, 'token' => $this->token, 'siteid' => $this->siteid] as $name => $value) {
            if ($value === '') {
                $missing[] = $name;
            }
        }
        if ($missing) {
            $this->summary['status'] = 'notconfigured';
            $this->summary['error'] = 'NOT_CONFIGURED: set ' . implode(', ', $missing) .
                ' in Site administration > Plugins > Local plugins > Segment sync';
            if ($this->store->get_state('lasterror') !== $this->summary['error']) {
                $this->store->set_state('lasterror', $this->summary['error']);
            }
            return $this->summary;
        }
        $now = ($this->now)();
        $nextattempt = (int) $this->store->get_state('nextattempt');
        if ($nextattempt > $now) {
            $this->summary['status'] = 'waiting';
            $this->summary['error'] = $this->store->get_state('lasterror');
            ($this->log)('waiting until ' . gmdate('Y-m-d H:i:s', $nextattempt) . ' UTC after: ' . $this->summary['error']);
            return $this->summary;
        }
        $done = 0;
        while ($done < $maxrows) {
            $rows = $this->store->pending(min(self::FETCH, $maxrows - $done));
            if (!$rows) {
                break;
            }
            foreach ($this->batcher->plan($rows) as $step) {
                if (!$this->settle($step)) {
                    return $this->summary;
                }
            }
            $done += count($rows);
        }
        if ($this->summary['requests'] > 0 || $this->summary['rejected'] > 0) {
            $this->summary['status'] = 'sent';
            $this->store->set_state('lastsuccess', (string) ($this->now)());
        }
        // Cleared only when set: writing plugin config invalidates Moodle's config cache.
        foreach (['failures', 'nextattempt', 'lasterror'] as $name) {
            if ($this->store->get_state($name) !== null) {
                $this->store->set_state($name, null);
            }
        }
        return $this->summary;
    }

    /**
     * Performs one step; false when the run must stop.
     *
     * @param array $step a step of batcher::plan()
     * @return bool
     */
    private function settle(array $step): bool {
        if ($step['type'] === 'invalid') {
            $this->reject($step['row'], $step['code'], $step['path'], $step['message']);
            return true;
        }
        if ($step['type'] === 'ingest') {
            return $this->send_ingest($step['rows'], $step['body']);
        }
        return $this->send_catalog($step['row'], $step['method'], $step['path'], $step['body']);
    }

    /**
     * Posts one ingest batch and settles its rows by the per-record results.
     *
     * @param \stdClass[] $rows
     * @param string $body
     * @return bool
     */
    private function send_ingest(array $rows, string $body): bool {
        $url = $this->endpoint . $this->batcher->ingest_path();
        $response = $this->call('POST', $url, $body);
        if (!$this->usable($response, $url, false)) {
            return false;
        }
        if ($response->status !== 200) {
            return $this->fail('HTTP_' . $response->status, "$url answered the whole batch with " .
                self::describe($response) . '; nothing was accepted. The batch is retried.', $response);
        }
        $decoded = json_decode($response->body, true);
        if (!is_array($decoded) || !isset($decoded['results']) || !is_array($decoded['results'])) {
            return $this->fail('BAD_RESPONSE', "$url answered 200 without a results list: " .
                self::excerpt($response->body), $response);
        }
        $byeventid = [];
        foreach ($rows as $index => $row) {
            $byeventid[$this->batcher->event_id($row)] = $index;
        }
        $settled = [];
        $accepted = [];
        foreach ($decoded['results'] as $result) {
            if (!is_array($result)) {
                continue;
            }
            $index = null;
            if (isset($result['event_id']) && isset($byeventid[$result['event_id']])) {
                $index = $byeventid[$result['event_id']];
            } else if (!isset($result['event_id']) && isset($result['index']) && isset($rows[(int) $result['index']])) {
                $index = (int) $result['index'];
            }
            if ($index === null || isset($settled[$index])) {
                continue;
            }
            $status = $result['status'] ?? '';
            if ($status === 'ACCEPTED') {
                $accepted[] = (int) $rows[$index]->id;
                $settled[$index] = true;
            } else if ($status === 'REJECTED') {
                $this->reject($rows[$index], (string) ($result['code'] ?? 'REJECTED'), (string) ($result['path'] ?? ''),
                    (string) ($result['message'] ?? 'rejected by the processor'));
                $settled[$index] = true;
            }
        }
        if ($accepted) {
            $this->store->delete($accepted);
            $this->summary['accepted'] += count($accepted);
        }
        if (count($settled) < count($rows)) {
            return $this->fail('INCOMPLETE_RESPONSE', "$url settled " . count($settled) . ' of ' . count($rows) .
                ' records; the others stay queued and are sent again', $response);
        }
        ($this->log)('ingest: ' . count($accepted) . ' accepted, ' . (count($rows) - count($accepted)) . ' rejected');
        return true;
    }

    /**
     * Sends one catalog write (segment or field) and settles its row.
     *
     * @param \stdClass $row
     * @param string $method
     * @param string $path
     * @param string|null $body
     * @return bool
     */
    private function send_catalog(\stdClass $row, string $method, string $path, ?string $body): bool {
        $url = $this->endpoint . $path;
        $response = $this->call($method, $url, $body);
        if (!$this->usable($response, $url, true)) {
            return false;
        }
        if ($response->status >= 200 && $response->status < 300) {
            $this->store->delete([(int) $row->id]);
            $this->summary['accepted']++;
            ($this->log)("$method $path: {$response->status}");
            return true;
        }
        // A 4xx with the processor's error body ({code, message, path}) refuses this record only.
        $error = json_decode($response->body, true);
        $this->reject($row, (string) $error['code'], (string) ($error['path'] ?? ''),
            (string) ($error['message'] ?? "HTTP {$response->status}"));
        return true;
    }

    /**
     * Whether a response can settle records; otherwise records the failure and returns false.
     *
     * @param http_response $response
     * @param string $url
     * @param bool $catalog a catalog endpoint (per-record 4xx answers are expected there)
     * @return bool
     */
    private function usable(http_response $response, string $url, bool $catalog): bool {
        if ($response->status === 0) {
            return $this->fail('NETWORK', "could not reach $url: {$response->error}. If the processor is on an " .
                'internal host or a port other than 80/443, allow it in Site administration > General > Security > ' .
                'HTTP security (curlsecurityblockedhosts, curlsecurityallowedport)', $response);
        }
        if ($response->status === 401 || $response->status === 403) {
            return $this->fail('AUTH', "$url refused the token: " . self::describe($response) . '. Check the token, ' .
                'its roles (ingest or system for users; site_admin or system for cohorts and fields) and that its ' .
                'site_id is the configured site id', $response);
        }
        if ($response->status === 429 || $response->status >= 500) {
            return $this->fail('HTTP_' . $response->status, "$url is unavailable: " . self::describe($response),
                $response);
        }
        if ($response->status < 200 || ($response->status >= 300 && $response->status < 400)) {
            return $this->fail('HTTP_' . $response->status, "$url answered " . self::describe($response) .
                '; check the endpoint URL (redirects are not followed for writes)', $response);
        }
        if ($catalog && $response->status >= 400) {
            $error = json_decode($response->body, true);
            if (!is_array($error) || !isset($error['code']) || !is_string($error['code'])) {
                // Not the processor's error body: a wrong endpoint URL or a proxy; do not blame the record.
                return $this->fail('HTTP_' . $response->status, "$url answered " . self::describe($response) .
                    ' without the processor\'s error body; check the endpoint URL', $response);
            }
        }
        return true;
    }

    /**
     * Sends a request with the token.
     *
     * @param string $method
     * @param string $url
     * @param string|null $body
     * @return http_response
     */
    private function call(string $method, string $url, ?string $body): http_response {
        $this->summary['requests']++;
        $headers = ['Authorization: Bearer ' . $this->token, 'Accept: application/json'];
        if ($body !== null) {
            $headers[] = 'Content-Type: application/json';
        }
        return $this->http->request($method, $url, $headers, $body);
    }

    /**
     * Keeps a row as rejected.
     *
     * @param \stdClass $row
     * @param string $code
     * @param string $path
     * @param string $message
     */
    private function reject(\stdClass $row, string $code, string $path, string $message): void {
        $this->store->reject((int) $row->id, $code, $path, $message);
        $this->summary['rejected']++;
        ($this->log)("rejected queue row {$row->id} ({$row->kind} {$row->op} {$row->targetid}): $code $message");
    }

    /**
     * Records a failed attempt and when to try again.
     *
     * @param string $code
     * @param string $message
     * @param http_response $response
     * @return bool always false
     */
    private function fail(string $code, string $message, http_response $response): bool {
        $failures = (int) $this->store->get_state('failures') + 1;
        $delay = self::backoff($failures, self::retry_after($response->header('Retry-After'), ($this->now)()));
        $this->store->set_state('failures', (string) $failures);
        $this->store->set_state('nextattempt', (string) (($this->now)() + $delay));
        $this->summary['status'] = 'failed';
        $this->summary['error'] = "$code: $message";
        $this->store->set_state('lasterror', $this->summary['error']);
        ($this->log)("failed ($code), attempt $failures, next in {$delay}s: $message");
        return false;
    }

    /**
     * Seconds to wait after the n-th consecutive failure: 60, 120, 240, ... at most 3600; never less
     * than the server's Retry-After.
     *
     * @param int $failures consecutive failures so far (>= 1)
     * @param int|null $retryafter seconds the server asked for
     * @return int
     */
    public static function backoff(int $failures, ?int $retryafter = null): int {
        $delay = self::BASE_BACKOFF * (2 ** min(max($failures, 1) - 1, 10));
        $delay = min($delay, self::MAX_BACKOFF);
        return max($delay, $retryafter ?? 0);
    }

    /**
     * Seconds of a Retry-After header (delta-seconds or an HTTP date), or null.
     *
     * @param string|null $value
     * @param int $now
     * @return int|null
     */
    public static function retry_after(?string $value, int $now): ?int {
        if ($value === null || trim($value) === '') {
            return null;
        }
        $value = trim($value);
        if (ctype_digit($value)) {
            return min((int) $value, self::MAX_BACKOFF);
        }
        $time = strtotime($value);
        return $time === false ? null : max(0, min($time - $now, self::MAX_BACKOFF));
    }

    /**
     * Status and the processor's {code, message} of a response, for messages.
     *
     * @param http_response $response
     * @return string
     */
    private static function describe(http_response $response): string {
        $error = json_decode($response->body, true);
        if (is_array($error) && isset($error['code'])) {
            return "HTTP {$response->status} {$error['code']}: " . ($error['message'] ?? '');
        }
        return "HTTP {$response->status} " . self::excerpt($response->body);
    }

    /**
     * The start of a body, for messages.
     *
     * @param string $body
     * @return string
     */
    private static function excerpt(string $body): string {
        $body = trim(preg_replace('/\s+/', ' ', $body));
        return strlen($body) > 200 ? substr($body, 0, 200) . '...' : $body;
    }
}
