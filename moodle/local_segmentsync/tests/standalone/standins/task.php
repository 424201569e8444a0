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
 * Stand-ins for the task base classes (lib/classes/task/task_base.php, scheduled_task.php) and
 * get_string() (lib/moodlelib.php), reduced to what the plugin's task uses. Not Moodle.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace core\task {

    /** As \core\task\task_base: a task runs execute(). */
    abstract class task_base {
        /** Does the work. */
        abstract public function execute();
    }

    /** As \core\task\scheduled_task: has a name shown to admins. */
    abstract class scheduled_task extends task_base {
        /**
         * Name shown to admins.
         *
         * @return string
         */
        abstract public function get_name();
    }
}

namespace {

    /**
     * As get_string() for this plugin's strings: reads lang/en and substitutes {$a} and {$a->name}.
     *
     * @param string $identifier
     * @param string $component
     * @param mixed $a
     * @return string
     */
    function get_string($identifier, $component = '', $a = null) {
        if ($component !== 'local_segmentsync') {
            return "[[$identifier]]";
        }
        $string = [];
        include(__DIR__ . '/../../../lang/en/local_segmentsync.php');
        if (!isset($string[$identifier])) {
            throw new coding_exception("Invalid get_string() identifier: '$identifier'");
        }
        $text = $string[$identifier];
        if (is_object($a) || is_array($a)) {
            foreach ((array) $a as $name => $value) {
                $text = str_replace('{$a->' . $name . '}', (string) $value, $text);
            }
        } else if ($a !== null) {
            $text = str_replace('{$a}', (string) $a, $text);
        }
        return $text;
    }
}
