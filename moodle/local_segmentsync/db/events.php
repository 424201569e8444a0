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
 * Event observers of local_segmentsync.
 *
 * Every observer is internal (the default, written out here on purpose). lib/classes/event/manager.php,
 * process_buffers(): an internal observer is called at once, while the triggering code's delegated
 * transaction is still open, so the outbox row is committed or rolled back together with the change
 * (a transactional outbox). An observer with 'internal' => false is buffered in $extbuffer until
 * database_transaction_commited(); a crash between that commit and the observer would lose the change.
 * When the triggering code runs without a transaction (e.g. user_update_user() from a form), the row is
 * written right after the change in the same request; the periodic resync covers that window.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$observers = [
    [
        'eventname' => '\core\event\user_created',
        'callback' => '\local_segmentsync\observer::user_created',
        'internal' => true,
    ],
    [
        'eventname' => '\core\event\user_updated',
        'callback' => '\local_segmentsync\observer::user_updated',
        'internal' => true,
    ],
    [
        'eventname' => '\core\event\user_deleted',
        'callback' => '\local_segmentsync\observer::user_deleted',
        'internal' => true,
    ],
    [
        'eventname' => '\core\event\cohort_created',
        'callback' => '\local_segmentsync\observer::cohort_created',
        'internal' => true,
    ],
    [
        'eventname' => '\core\event\cohort_updated',
        'callback' => '\local_segmentsync\observer::cohort_updated',
        'internal' => true,
    ],
    [
        'eventname' => '\core\event\cohort_deleted',
        'callback' => '\local_segmentsync\observer::cohort_deleted',
        'internal' => true,
    ],
    [
        'eventname' => '\core\event\user_info_field_created',
        'callback' => '\local_segmentsync\observer::user_info_field_created',
        'internal' => true,
    ],
    [
        'eventname' => '\core\event\user_info_field_updated',
        'callback' => '\local_segmentsync\observer::user_info_field_updated',
        'internal' => true,
    ],
    [
        'eventname' => '\core\event\user_info_field_deleted',
        'callback' => '\local_segmentsync\observer::user_info_field_deleted',
        'internal' => true,
    ],
];
