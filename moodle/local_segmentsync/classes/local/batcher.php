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
 * Splits outbox rows into requests.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * Plans the requests for a run of outbox rows, keeping their order.
 *
 * Consecutive user rows go into one POST /sites/{site}/ingest/users of at most $maxrecords records and
 * $maxbytes bytes of body (the endpoint's limits: 500 records, 256 KiB). A cohort or field row is one
 * PUT or DELETE on the catalog endpoints and ends the current user batch, so a field is declared before
 * the snapshots queued after it. A row that cannot be sent at all becomes an "invalid" step (settled
 * locally as rejected).
 */
final class batcher {

    /** @var int The ingest endpoint's record limit. */
    public const MAX_RECORDS = 500;

    /** @var int The ingest endpoint's body limit in bytes (256 KiB). */
    public const MAX_BYTES = 262144;

    /** @var string Start of an ingest body. */
    private const PREFIX = '{"records":[';

    /** @var string End of an ingest body. */
    private const SUFFIX = ']}';

    /** @var string */
    private $siteid;

    /** @var string */
    private $epoch;

    /** @var int */
    private $maxrecords;

    /** @var int */
    private $maxbytes;

    /**
     * @param string $siteid the processor's site id
     * @param string $epoch random token of this outbox (install.php), so event ids stay unique if the
     *        table is ever re-created and its ids start again at 1
     * @param int $maxrecords records per ingest request (1..500)
     * @param int $maxbytes bytes per ingest request body
     */
    public function __construct(string $siteid, string $epoch, int $maxrecords = self::MAX_RECORDS,
            int $maxbytes = self::MAX_BYTES) {
        $this->siteid = $siteid;
        $this->epoch = $epoch;
        $this->maxrecords = max(1, min(self::MAX_RECORDS, $maxrecords));
        $this->maxbytes = max(1024, min(self::MAX_BYTES, $maxbytes));
    }

    /**
     * The event_id of a user row: derived from the outbox row id, unique per change.
     *
     * @param \stdClass $row
     * @return string
     */
    public function event_id(\stdClass $row): string {
        return 'moodle-' . $this->epoch . '-' . $row->id;
    }

    /**
     * Path of the ingest endpoint.
     *
     * @return string
     */
    public function ingest_path(): string {
        return '/sites/' . rawurlencode($this->siteid) . '/ingest/users';
    }

    /**
     * One ingest record (JSON) of a user row.
     *
     * @param \stdClass $row
     * @return string
     * @throws \JsonException when the stored payload is not JSON
     */
    public function record(\stdClass $row): string {
        $record = [
            'op' => $row->op,
            'user_id' => (string) $row->targetid,
            'event_id' => $this->event_id($row),
            'occurred_at' => (int) $row->occurredat,
        ];
        if ($row->op === recorder::OP_UPSERT) {
            $record['event_type'] = (string) $row->eventtype;
            // Decoded as objects, so an empty profile stays {} and arrays stay arrays.
            $record['profile'] = json_decode((string) $row->payload, false, 512, JSON_THROW_ON_ERROR);
            if (!is_object($record['profile'])) {
                throw new \JsonException('the stored profile is not a JSON object');
            }
        }
        return recorder::json($record);
    }

    /**
     * The requests for a run of rows, in row order.
     *
     * @param \stdClass[] $rows pending rows in id order
     * @return array[] steps: ['type' => 'ingest', 'rows' => [...], 'body' => string],
     *         ['type' => 'catalog', 'row' => ..., 'method' => 'PUT'|'DELETE', 'path' => string, 'body' => ?string],
     *         ['type' => 'invalid', 'row' => ..., 'code' => string, 'path' => string, 'message' => string]
     */
    public function plan(array $rows): array {
        $steps = [];
        $batch = [];
        $parts = [];
        $size = 0;
        $flush = function () use (&$steps, &$batch, &$parts, &$size): void {
            if ($batch) {
                $steps[] = ['type' => 'ingest', 'rows' => $batch, 'body' => self::PREFIX . implode(',', $parts) . self::SUFFIX];
            }
            $batch = [];
            $parts = [];
            $size = 0;
        };
        $empty = strlen(self::PREFIX) + strlen(self::SUFFIX);
        foreach ($rows as $row) {
            if ($row->kind !== recorder::KIND_USER) {
                $flush();
                $steps[] = $this->catalog_step($row);
                continue;
            }
            try {
                $json = $this->record($row);
            } catch (\JsonException $e) {
                $steps[] = $this->invalid($row, 'CORRUPT_ROW', '$.profile',
                    'the queued snapshot is not valid JSON (' . $e->getMessage() . '); the next change of this user ' .
                    'queues a new one');
                continue;
            }
            $bytes = strlen($json);
            if ($empty + $bytes > $this->maxbytes) {
                $steps[] = $this->invalid($row, 'LIMIT_EXCEEDED', '$.profile',
                    "the snapshot is $bytes bytes, more than one request may carry ({$this->maxbytes} bytes); " .
                    'shorten the largest profile fields of this user (e.g. description or a textarea field)');
                continue;
            }
            $separator = $batch ? 1 : 0;
            if ($batch && (count($batch) >= $this->maxrecords || $empty + $size + $separator + $bytes > $this->maxbytes)) {
                $flush();
                $separator = 0;
            }
            $batch[] = $row;
            $parts[] = $json;
            $size += $separator + $bytes;
        }
        $flush();
        return $steps;
    }

    /**
     * The catalog request of a cohort or field row.
     *
     * @param \stdClass $row
     * @return array
     */
    private function catalog_step(\stdClass $row): array {
        $collection = $row->kind === recorder::KIND_SEGMENT ? 'segments' : 'fields';
        $path = '/sites/' . rawurlencode($this->siteid) . '/' . $collection . '/' . rawurlencode((string) $row->targetid);
        if ($row->op === recorder::OP_DELETE) {
            return ['type' => 'catalog', 'row' => $row, 'method' => 'DELETE', 'path' => $path, 'body' => null];
        }
        return ['type' => 'catalog', 'row' => $row, 'method' => 'PUT', 'path' => $path, 'body' => (string) $row->payload];
    }

    /**
     * A row settled locally as rejected.
     *
     * @param \stdClass $row
     * @param string $code
     * @param string $path
     * @param string $message
     * @return array
     */
    private function invalid(\stdClass $row, string $code, string $path, string $message): array {
        return ['type' => 'invalid', 'row' => $row, 'code' => $code, 'path' => $path, 'message' => $message];
    }
}
