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
 * Stand-ins for the Moodle core functions and classes the plugin calls (not Moodle; for standalone tests).
 *
 * Each one keeps the signature and the behaviour the plugin relies on, as read in Moodle's source
 * (lib/moodlelib.php, lib/setuplib.php, lib/classes/text.php, tag/classes/tag.php); see each comment.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

// Constants of lib/dml/moodle_database.php and lib/setuplib.php.
define('IGNORE_MISSING', 0);
define('IGNORE_MULTIPLE', 1);
define('MUST_EXIST', 2);
// Constants of lib/accesslib.php.
define('CONTEXT_SYSTEM', 10);
define('CAP_ALLOW', 1);
// Constant of lib/setuplib.php.
define('MATURITY_ALPHA', 50);

/** Moodle's base exception (lib/setuplib.php). */
class moodle_exception extends Exception {
}

/** As lib/setuplib.php. */
class coding_exception extends moodle_exception {
}

/** As lib/dml/dml_exception.php (base of all DML errors). */
class dml_exception extends moodle_exception {
}

/** As lib/dml/dml_write_exception.php. */
class dml_write_exception extends dml_exception {
}

/** As lib/dml/dml_missing_record_exception.php. */
class dml_missing_record_exception extends dml_exception {
}

/**
 * Plugin config store of the stand-ins: plugin => name => value (Moodle: table config_plugins).
 */
class standin_config {
    /** @var array */
    public static $values = [];
}

/**
 * As get_config() in lib/moodlelib.php: with a name, the value or false; without, an object of all values.
 *
 * @param string $plugin
 * @param string|null $name
 * @return mixed
 */
function get_config($plugin, $name = null) {
    $values = standin_config::$values[$plugin] ?? [];
    if ($name === null) {
        return (object) $values;
    }
    return array_key_exists($name, $values) ? $values[$name] : false;
}

/**
 * As set_config() in lib/moodlelib.php (values are stored as strings; null unsets).
 *
 * @param string $name
 * @param mixed $value
 * @param string|null $plugin
 * @return bool
 */
function set_config($name, $value, $plugin = null) {
    if ($value === null) {
        return unset_config($name, $plugin);
    }
    standin_config::$values[$plugin ?? 'core'][$name] = (string) $value;
    return true;
}

/**
 * As unset_config() in lib/moodlelib.php.
 *
 * @param string $name
 * @param string|null $plugin
 * @return bool
 */
function unset_config($name, $plugin = null) {
    unset(standin_config::$values[$plugin ?? 'core'][$name]);
    return true;
}

/**
 * As random_string() in lib/moodlelib.php: letters and digits.
 *
 * @param int $length
 * @return string
 */
function random_string($length = 15) {
    $pool = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    $string = '';
    for ($i = 0; $i < $length; $i++) {
        $string .= $pool[random_int(0, strlen($pool) - 1)];
    }
    return $string;
}

/**
 * As mtrace() in lib/setuplib.php; collected instead of printed.
 *
 * @param string $string
 * @param string $eol
 */
function mtrace($string, $eol = "\n") {
    $GLOBALS['standin_mtrace'][] = $string;
}

/**
 * As core_text (lib/classes/text.php), only substr.
 */
class core_text {
    /**
     * Multibyte-safe substr.
     *
     * @param string $text
     * @param int $start
     * @param int|null $len
     * @return string
     */
    public static function substr($text, $start, $len = null) {
        return mb_substr((string) $text, $start, $len, 'UTF-8');
    }
}

/**
 * As core_tag_tag (tag/classes/tag.php), only get_item_tags_array() over a fixture of tag names.
 */
class core_tag_tag {
    /** Include standard and not standard tags. */
    const BOTH_STANDARD_AND_NOT = 0;

    /** @var array "component/itemtype/itemid" => tag names */
    public static $tags = [];

    /**
     * Display names of an item's tags, keyed by tag id; htmlspecialchars-encoded unless $ashtml is false
     * (core_tag_tag::get_display_name()).
     *
     * @param string $component
     * @param string $itemtype
     * @param int $itemid
     * @param int $standardonly
     * @param int $tiuserid
     * @param bool $ashtml
     * @return string[]
     */
    public static function get_item_tags_array($component, $itemtype, $itemid, $standardonly = self::BOTH_STANDARD_AND_NOT,
            $tiuserid = 0, $ashtml = true) {
        $result = [];
        foreach (self::$tags["$component/$itemtype/$itemid"] ?? [] as $i => $name) {
            $result[100 + $i] = $ashtml ? htmlspecialchars($name, ENT_QUOTES, 'UTF-8') : $name;
        }
        return $result;
    }
}
