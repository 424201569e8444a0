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
 * One HTTP exchange's outcome.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * Status, headers and body of a response, or the transport error when there was no response.
 */
final class http_response {

    /** @var int HTTP status; 0 when no response arrived (network error, time-out, URL blocked by Moodle). */
    public $status;

    /** @var string Response body. */
    public $body;

    /** @var array<string,string> Response headers, names in lower case. */
    public $headers;

    /** @var string Transport error message when $status is 0. */
    public $error;

    /**
     * @param int $status
     * @param string $body
     * @param array $headers
     * @param string $error
     */
    public function __construct(int $status, string $body = '', array $headers = [], string $error = '') {
        $this->status = $status;
        $this->body = $body;
        $this->headers = array_change_key_case($headers, CASE_LOWER);
        $this->error = $error;
    }

    /**
     * A header's value, or null.
     *
     * @param string $name
     * @return string|null
     */
    public function header(string $name): ?string {
        return $this->headers[strtolower($name)] ?? null;
    }
}
