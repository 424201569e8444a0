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
 * Stand-in for Moodle's curl class (lib/filelib.php; \core\files\curl in recent releases). Not Moodle.
 *
 * Keeps the public surface the plugin uses and its observable behaviour, read in Moodle's source:
 * setHeader() collects "Name: value" lines; post() sets CURLOPT_POST and CURLOPT_POSTFIELDS (a string is
 * the raw body); delete() sets CURLOPT_CUSTOMREQUEST DELETE and, unless given, CURLOPT_USERPWD to an
 * anonymous login; request() resets info/error/errno first, returns the body or the error text, and for
 * a URL refused by the security helper returns the "blocked" text with an empty info array and errno 0.
 * The network is replaced by curl::$transport, a callable acting as the remote server.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

/**
 * Moodle's curl wrapper, with a scripted transport.
 */
class curl {
    /** @var callable|null fn(string $method, string $url, string[] $headers, ?string $body): array
     *       [status, body, headers] or ['errno' => int, 'error' => string] */
    public static $transport = null;

    /** @var string[] hosts the security helper refuses (Moodle: curlsecurityblockedhosts) */
    public static $blockedhosts = [];

    /** @var array[] every request sent: method, url, headers, body, options */
    public static $sent = [];

    /** @var array response headers, keyed by name as sent */
    public $response = [];
    /** @var array request headers */
    public $header = [];
    /** @var array cURL information */
    public $info;
    /** @var string error text */
    public $error;
    /** @var int cURL error number */
    public $errno;
    /** @var array options */
    private $options = [];

    /**
     * @param array $settings
     */
    public function __construct($settings = []) {
        $this->options = ['CURLOPT_FOLLOWLOCATION' => 1, 'CURLOPT_CONNECTTIMEOUT' => 30];
    }

    /**
     * As curl::setHeader().
     *
     * @param array|string $header
     */
    public function setHeader($header) {
        if (is_array($header)) {
            foreach ($header as $v) {
                $this->setHeader($v);
            }
        } else {
            $value = preg_replace('/[\r\n]/', '', $header);
            if (!in_array($value, $this->header)) {
                $this->header[] = $value;
            }
        }
    }

    /**
     * As curl::getResponse().
     *
     * @return array
     */
    public function getResponse() {
        return $this->response;
    }

    /**
     * As curl::get_info().
     *
     * @return array
     */
    public function get_info() {
        return $this->info;
    }

    /**
     * As curl::get_errno().
     *
     * @return int
     */
    public function get_errno() {
        return $this->errno;
    }

    /**
     * As curl::post().
     *
     * @param string $url
     * @param array|string $params
     * @param array $options
     * @return string
     */
    public function post($url, $params = '', $options = []) {
        $options['CURLOPT_POST'] = 1;
        $options['CURLOPT_POSTFIELDS'] = $params;
        return $this->request($url, $options);
    }

    /**
     * As curl::delete().
     *
     * @param string $url
     * @param array $param
     * @param array $options
     * @return string
     */
    public function delete($url, $param = [], $options = []) {
        $options['CURLOPT_CUSTOMREQUEST'] = 'DELETE';
        if (!isset($options['CURLOPT_USERPWD'])) {
            $options['CURLOPT_USERPWD'] = 'anonymous: noreply@moodle.org';
        }
        return $this->request($url, $options);
    }

    /**
     * As curl::request(), with curl::$transport instead of the network.
     *
     * @param string $url
     * @param array $options
     * @return string
     */
    protected function request($url, $options = []) {
        $this->info = [];
        $this->error = '';
        $this->errno = 0;
        $this->response = [];
        $host = parse_url($url, PHP_URL_HOST);
        if (in_array($host, self::$blockedhosts, true)) {
            $this->error = 'The URL is blocked.';
            return $this->error;
        }
        $options = array_merge($this->options, $options);
        $method = $options['CURLOPT_CUSTOMREQUEST'] ?? (!empty($options['CURLOPT_POST']) ? 'POST' : 'GET');
        $headers = $this->header;
        $hasauth = (bool) preg_grep('/^Authorization:/i', $headers);
        if (!empty($options['CURLOPT_USERPWD']) && !$hasauth) {
            // libcurl sends Basic credentials only when no Authorization header was given.
            $headers[] = 'Authorization: Basic ' . base64_encode($options['CURLOPT_USERPWD']);
        }
        $body = isset($options['CURLOPT_POSTFIELDS']) ? (string) $options['CURLOPT_POSTFIELDS'] : null;
        self::$sent[] = ['method' => $method, 'url' => $url, 'headers' => $headers, 'body' => $body, 'options' => $options];
        $answer = (self::$transport)($method, $url, $headers, $body);
        if (isset($answer['errno'])) {
            $this->errno = $answer['errno'];
            $this->error = $answer['error'];
            $this->info = ['http_code' => 0];
            return $this->error;
        }
        [$status, $responsebody, $responseheaders] = $answer + [2 => []];
        $this->info = ['http_code' => $status];
        $this->response = $responseheaders;
        return $responsebody;
    }
}
