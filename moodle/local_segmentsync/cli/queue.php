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
 * Inspect and act on the outbox: list rejected rows, re-queue or discard them, send now.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

define('CLI_SCRIPT', true);

require(__DIR__ . '/../../../config.php');
require_once($CFG->libdir . '/clilib.php');

[$options, $unrecognised] = cli_get_params([
    'help' => false,
    'list-rejected' => false,
    'requeue-rejected' => false,
    'discard-rejected' => false,
    'send-now' => false,
], ['h' => 'help']);

if ($unrecognised) {
    cli_error(get_string('cliunknowoption', 'admin', implode(', ', $unrecognised)));
}

if ($options['help'] || !array_filter(array_slice($options, 1))) {
    echo "Outbox of local_segmentsync.

Options:
--list-rejected     List rejected rows with their reason
--requeue-rejected  Mark every rejected row pending again (after fixing the cause)
--discard-rejected  Delete every rejected row
--send-now          Clear the back-off and send what is pending now
-h, --help          This help

Example:
\$ sudo -u www-data php local/segmentsync/cli/queue.php --list-rejected
";
    exit(0);
}

$table = \local_segmentsync\local\recorder::TABLE;
$rejected = ['status' => \local_segmentsync\local\recorder::STATUS_REJECTED];

if ($options['list-rejected']) {
    $rows = $DB->get_recordset($table, $rejected, 'id ASC');
    foreach ($rows as $row) {
        cli_writeln("{$row->id}\t{$row->kind}\t{$row->op}\t{$row->targetid}\t{$row->errorcode}\t{$row->errorpath}\t" .
            "{$row->errormessage}");
    }
    $rows->close();
}
if ($options['requeue-rejected']) {
    $count = $DB->count_records($table, $rejected);
    $DB->set_field($table, 'status', \local_segmentsync\local\recorder::STATUS_PENDING, $rejected);
    cli_writeln("$count rows pending again");
}
if ($options['discard-rejected']) {
    $count = $DB->count_records($table, $rejected);
    $DB->delete_records($table, $rejected);
    cli_writeln("$count rejected rows deleted");
}
if ($options['send-now']) {
    $store = new \local_segmentsync\local\db_queue_store();
    $store->set_state('nextattempt', null);
    (new \local_segmentsync\task\push_queue())->execute();
}
