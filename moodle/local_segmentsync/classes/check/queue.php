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
 * Status check: is the outbox flowing, and has anything been rejected?
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

namespace local_segmentsync\check;

use core\check\check;
use core\check\result;
use local_segmentsync\local\db_queue_store;

/**
 * Shown in Site administration > Reports > System status (lib.php local_segmentsync_status_checks()).
 */
class queue extends check {

    /**
     * Link to the settings page, which lists the counts and the last error.
     *
     * @return \action_link|null
     */
    public function get_action_link(): ?\action_link {
        return new \action_link(new \moodle_url('/admin/settings.php', ['section' => 'local_segmentsync']),
            get_string('pluginname', 'local_segmentsync'));
    }

    /**
     * ERROR while sending fails, WARNING when rows were rejected, else OK (INFO while rows are pending).
     *
     * @return result
     */
    public function get_result(): result {
        $store = new db_queue_store();
        $counts = $store->counts();
        $lasterror = $store->get_state('lasterror');
        $details = get_string('statusdetails', 'local_segmentsync', (object) [
            'pending' => $counts['pending'],
            'rejected' => $counts['rejected'],
            'lasterror' => $lasterror ?? '-',
        ]);
        if ($lasterror !== null) {
            return new result(result::ERROR, get_string('checkfailing', 'local_segmentsync', $lasterror), $details);
        }
        if ($counts['rejected'] > 0) {
            return new result(result::WARNING, get_string('checkrejected', 'local_segmentsync', $counts['rejected']),
                $details);
        }
        if ($counts['pending'] > 0) {
            return new result(result::INFO, get_string('checkpending', 'local_segmentsync', $counts['pending']), $details);
        }
        return new result(result::OK, get_string('checkok', 'local_segmentsync'), $details);
    }
}
