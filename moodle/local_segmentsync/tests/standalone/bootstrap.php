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
 * Bootstrap of the standalone PHPUnit suite: the plugin's classes plus stand-ins for Moodle.
 *
 * These tests run WITHOUT Moodle (php-cli and phpunit only). Test files end in "Test.php", not
 * "_test.php", so Moodle's own PHPUnit runner does not collect them (its stand-ins would clash with
 * Moodle's real functions).
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

error_reporting(E_ALL);
define('MOODLE_INTERNAL', true);

$CFG = new stdClass();
$CFG->dirroot = __DIR__ . '/standins/dirroot';
$CFG->libdir = $CFG->dirroot . '/lib';

require_once(__DIR__ . '/standins/moodle.php');
require_once(__DIR__ . '/standins/fake_database.php');
require_once(__DIR__ . '/standins/events.php');
require_once(__DIR__ . '/standins/task.php');
require_once($CFG->libdir . '/filelib.php');

spl_autoload_register(static function (string $class): void {
    $prefix = 'local_segmentsync\\';
    if (strpos($class, $prefix) === 0) {
        $file = __DIR__ . '/../../classes/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
        if (is_file($file)) {
            require_once($file);
        }
    }
});
require_once(__DIR__ . '/standins/fake_processor.php');

/**
 * A fresh stand-in Moodle: empty $DB with the plugin's tables, no config, no tags, no HTTP.
 *
 * @return fake_database
 */
function standin_reset(): fake_database {
    global $DB;
    $DB = new fake_database();
    $DB->load_schema(__DIR__ . '/../../db/install.xml');
    // Moodle records an installed plugin's version in its config (upgrade_plugins()).
    standin_config::$values = ['local_segmentsync' => ['version' => '2026120400']];
    core_tag_tag::$tags = [];
    curl::$transport = null;
    curl::$blockedhosts = [];
    curl::$sent = [];
    $GLOBALS['standin_mtrace'] = [];
    // The observers share one source per request (its field-definition cache); a test is a new request.
    $source = new ReflectionProperty(\local_segmentsync\observer::class, 'source');
    $source->setAccessible(true);
    $source->setValue(null, null);
    return $DB;
}
