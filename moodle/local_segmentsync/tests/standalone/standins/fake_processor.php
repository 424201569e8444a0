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
 * A double of the segment automation processor's HTTP API, as the agreed contract describes it
 * (INGEST_CONTRACT.md in this repository; docs/moodle.md): POST /sites/{site}/ingest/users and the
 * catalog PUT/DELETE of segments and fields. It is the remote system of these tests, not plugin code.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

use local_segmentsync\local\http_client;
use local_segmentsync\local\http_response;

/**
 * The processor's endpoints, with switches for the failures the sender must survive.
 */
class fake_processor implements http_client {
    /** @var string accepted bearer token */
    public $token = 'TOKEN';
    /** @var string the token's site_id */
    public $siteid = 'site-1';
    /** @var array[] every request: method, path, headers, body */
    public $requests = [];
    /** @var array[] records ACCEPTED, in arrival order */
    public $ingested = [];
    /** @var array[] catalog writes answered 202: [method, path, body] */
    public $catalog = [];
    /** @var array<string,array> user_id => [code, message]: records to reject */
    public $reject = [];
    /** @var array forced answers, used first: [status, body, headers] or ['errno' => int, 'error' => string] */
    public $script = [];
    /** @var int results left out of the next ingest answer (a broken server) */
    public $omitresults = 0;
    /** @var bool answer results in reverse order */
    public $reverse = false;

    /** FieldType values (processor/rules/fields.py). */
    private const FIELD_TYPES = ['TEXT', 'TEXTAREA', 'MENU', 'MULTISELECT', 'CHECKBOX', 'DATETIME', 'NUMBER'];

    public function request(string $method, string $url, array $headers, ?string $body): http_response {
        $answer = $this->handle($method, $url, $headers, $body);
        if (isset($answer['errno'])) {
            return new http_response(0, '', [], $answer['error']);
        }
        return new http_response($answer[0], $answer[1], $answer[2] ?? []);
    }

    /**
     * Answers one request: [status, body, headers], or ['errno' => ..., 'error' => ...] for a network error.
     *
     * @param string $method
     * @param string $url
     * @param string[] $headers
     * @param string|null $body
     * @return array
     */
    public function handle(string $method, string $url, array $headers, ?string $body): array {
        $path = (string) parse_url($url, PHP_URL_PATH);
        $this->requests[] = ['method' => $method, 'path' => $path, 'headers' => $headers, 'body' => $body];
        if ($this->script) {
            return array_shift($this->script);
        }
        if (!in_array('Authorization: Bearer ' . $this->token, $headers, true)) {
            return self::error(401, 'UNAUTHORIZED', 'missing or invalid token', '$.headers.Authorization');
        }
        if (!preg_match('#^/sites/([^/]+)/(ingest/users|segments/[^/]+|fields/[^/]+)$#', $path, $m)) {
            return [404, '<html>Not Found</html>', ['Content-Type' => 'text/html']];
        }
        if (rawurldecode($m[1]) !== $this->siteid) {
            return self::error(403, 'FORBIDDEN', 'the token is for another site', '$.site');
        }
        if ($m[2] === 'ingest/users') {
            return $method === 'POST' ? $this->ingest($headers, (string) $body) : [405, '', []];
        }
        return $this->catalog_write($method, $path, $body);
    }

    /**
     * The ingest endpoint.
     *
     * @param array $headers
     * @param string $body
     * @return array
     */
    private function ingest(array $headers, string $body): array {
        if (!in_array('Content-Type: application/json', $headers, true)) {
            return self::error(415, 'UNSUPPORTED_MEDIA_TYPE', 'send application/json', '$');
        }
        if (strlen($body) > 262144) {
            return self::error(413, 'LIMIT_EXCEEDED', 'request body over 256 KiB', '$');
        }
        $request = json_decode($body, true);
        if (!is_array($request) || !isset($request['records']) || !is_array($request['records'])) {
            return self::error(400, 'INVALID_JSON', 'expected {"records": [...]}', '$');
        }
        if (count($request['records']) > 500) {
            return self::error(413, 'LIMIT_EXCEEDED', 'more than 500 records', '$.records');
        }
        $results = [];
        foreach ($request['records'] as $index => $record) {
            $eventid = $record['event_id'] ?? null;
            $problem = $this->validate($record);
            if ($problem === null && isset($this->reject[$record['user_id']])) {
                [$code, $message] = $this->reject[$record['user_id']];
                $problem = [$code, '$.records[' . $index . '].profile', $message];
            } else if ($problem !== null) {
                $problem[1] = '$.records[' . $index . ']' . $problem[1];
            }
            if ($problem === null) {
                $this->ingested[] = $record;
                $results[] = ['index' => $index, 'event_id' => $eventid, 'status' => 'ACCEPTED'];
            } else {
                $results[] = ['index' => $index, 'event_id' => $eventid, 'status' => 'REJECTED', 'code' => $problem[0],
                    'path' => $problem[1], 'message' => $problem[2]];
            }
        }
        if ($this->omitresults > 0) {
            $results = array_slice($results, 0, max(0, count($results) - $this->omitresults));
            $this->omitresults = 0;
        }
        if ($this->reverse) {
            $results = array_reverse($results);
        }
        $accepted = count(array_filter($results, static function ($r) {
            return $r['status'] === 'ACCEPTED';
        }));
        return [200, json_encode(['accepted' => $accepted, 'rejected' => count($results) - $accepted,
            'results' => $results]), ['Content-Type' => 'application/json']];
    }

    /**
     * Problems of one record: [code, path suffix, message] or null.
     *
     * @param mixed $record
     * @return array|null
     */
    private function validate($record): ?array {
        if (!is_array($record)) {
            return ['INVALID_RECORD', '', 'a record is an object'];
        }
        if (!in_array($record['op'] ?? null, ['upsert', 'delete'], true)) {
            return ['INVALID_OP', '.op', 'op is upsert or delete'];
        }
        $userid = $record['user_id'] ?? null;
        if (!is_string($userid) || $userid === '' || mb_strlen($userid) > 255) {
            return ['INVALID_ID', '.user_id', 'user_id is a string of 1 to 255 characters'];
        }
        if (!is_string($record['event_id'] ?? null) || $record['event_id'] === '') {
            return ['INVALID_ID', '.event_id', 'event_id is required'];
        }
        if (!is_int($record['occurred_at'] ?? null)) {
            return ['INVALID_VALUE', '.occurred_at', 'occurred_at is epoch milliseconds'];
        }
        if ($record['op'] === 'upsert') {
            if (!in_array($record['event_type'] ?? 'USER_UPDATED', ['USER_CREATED', 'USER_UPDATED'], true)) {
                return ['INVALID_VALUE', '.event_type', 'USER_CREATED or USER_UPDATED'];
            }
            if (!isset($record['profile']) || !is_array($record['profile'])) {
                return ['INVALID_VALUE', '.profile', 'profile is an object'];
            }
            foreach ($record['profile'] as $key => $value) {
                if (is_string($value) && strlen($value) > 65536) {
                    return ['LIMIT_EXCEEDED', '.profile.' . $key, 'strings are at most 64 KiB'];
                }
            }
        }
        return null;
    }

    /**
     * PUT/DELETE of a segment or field.
     *
     * @param string $method
     * @param string $path
     * @param string|null $body
     * @return array
     */
    private function catalog_write(string $method, string $path, ?string $body): array {
        if ($method === 'PUT') {
            $data = json_decode((string) $body, true);
            if (!is_array($data) || !isset($data['name']) || !is_string($data['name'])) {
                return self::error(400, 'INVALID_JSON', 'body needs a name', '$.name');
            }
            if (strpos($path, '/fields/') !== false && !in_array($data['datatype'] ?? null, self::FIELD_TYPES, true)) {
                return self::error(400, 'INVALID_FIELD', 'unknown datatype', '$.datatype');
            }
        } else if ($method !== 'DELETE') {
            return [405, '', []];
        }
        $this->catalog[] = [$method, $path, $body];
        return [202, json_encode(['command_id' => 'cmd-' . count($this->catalog), 'status' => 'PENDING',
            'poll' => '/commands/cmd-' . count($this->catalog)]), ['Content-Type' => 'application/json']];
    }

    /**
     * A whole-request error in the processor's format.
     *
     * @param int $status
     * @param string $code
     * @param string $message
     * @param string $path
     * @return array
     */
    public static function error(int $status, string $code, string $message, string $path): array {
        return [$status, json_encode(['code' => $code, 'message' => $message, 'path' => $path]),
            ['Content-Type' => 'application/json']];
    }
}
