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
 * HTTP through Moodle's curl class.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\local;

/**
 * Sends requests with Moodle's \curl (lib/filelib.php; \core\files\curl in recent releases), so the site's
 * proxy settings and cURL security rules (blocked hosts, allowed ports) apply.
 *
 * How that class reports outcomes (read in its source): request() returns the body, or the error text;
 * get_errno() is the cURL error number; get_info()['http_code'] is the status (0 or absent when nothing was
 * received); a URL refused by the security helper returns the "blocked" message with an empty info array.
 * Response headers are in getResponse(), keyed by the name as sent.
 */
final class curl_http_client implements http_client {

    /** @var int Seconds a whole request may take. */
    private $timeout;

    /** @var callable(): \curl */
    private $factory;

    /**
     * @param int $timeout seconds for a whole request
     * @param callable|null $factory creates the curl object (default: new \curl())
     */
    public function __construct(int $timeout = 60, ?callable $factory = null) {
        $this->timeout = $timeout;
        $this->factory = $factory ?? static function () {
            global $CFG;
            require_once($CFG->libdir . '/filelib.php');
            return new \curl();
        };
    }

    public function request(string $method, string $url, array $headers, ?string $body): http_response {
        $curl = ($this->factory)();
        $curl->setHeader($headers);
        $options = [
            'CURLOPT_TIMEOUT' => $this->timeout,
            'CURLOPT_CONNECTTIMEOUT' => min(10, $this->timeout),
            // Writes are not re-sent to another URL; a redirect shows up as a failure with its status.
            'CURLOPT_FOLLOWLOCATION' => 0,
        ];
        if ($method === 'POST') {
            // The post() method with a string sets CURLOPT_POSTFIELDS to the raw body.
            $result = $curl->post($url, (string) $body, $options);
        } else if ($method === 'PUT') {
            // Moodle's put() uploads a file unless given non-file params; post() with a custom method sends the
            // JSON body exactly as for POST, on every supported release.
            $options['CURLOPT_CUSTOMREQUEST'] = 'PUT';
            $result = $curl->post($url, (string) $body, $options);
        } else if ($method === 'DELETE') {
            // The delete() method sets CURLOPT_USERPWD to an anonymous login unless one is given; libcurl does not
            // send its Basic header when the request carries its own Authorization header, as ours does.
            $result = $curl->delete($url, [], $options);
        } else {
            throw new \InvalidArgumentException("unsupported method $method");
        }
        $info = $curl->get_info();
        $status = is_array($info) ? (int) ($info['http_code'] ?? 0) : 0;
        if ($curl->get_errno() || $status === 0) {
            $error = (string) ($curl->error ?: $result);
            return new http_response(0, '', [], $error !== '' ? $error : 'no response');
        }
        $headers = [];
        foreach ((array) $curl->getResponse() as $name => $value) {
            $headers[(string) $name] = is_array($value) ? (string) end($value) : (string) $value;
        }
        return new http_response($status, is_string($result) ? $result : '', $headers);
    }
}
