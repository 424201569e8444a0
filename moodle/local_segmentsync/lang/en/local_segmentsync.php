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
 * English strings of local_segmentsync.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$string['batchsize'] = 'Records per request';
$string['batchsize_desc'] = 'User changes sent in one request to the ingest endpoint (1 to 500). A request also never exceeds 256 KiB.';
$string['checkfailing'] = 'Sending to the segment automation processor fails: {$a}';
$string['checkok'] = 'Every change has been sent to the segment automation processor.';
$string['checkpending'] = '{$a} changes are waiting to be sent to the segment automation processor.';
$string['checkrejected'] = '{$a} changes were rejected by the segment automation processor; see the plugin settings page or run local/segmentsync/cli/queue.php --list-rejected.';
$string['connection'] = 'Connection';
$string['endpoint'] = 'Processor URL';
$string['endpoint_desc'] = 'Base URL of the segment automation processor\'s API, for example https://segments.example.org. The plugin calls /sites/{site}/ingest/users, /sites/{site}/segments/... and /sites/{site}/fields/... under it. If it is on an internal host or a port other than 80/443, allow it in Site administration > General > Security > HTTP security.';
$string['mapcohortid'] = 'Cohort id (stable when a cohort is renamed)';
$string['mapcohortidnumber'] = 'Cohort ID number (cohorts without one are not segments)';
$string['mapid'] = 'User id';
$string['mapidnumber'] = 'ID number';
$string['mapping'] = 'Mapping';
$string['mapusername'] = 'Username';
$string['pluginname'] = 'Segment sync';
$string['privacy:metadata:processor'] = 'User profile snapshots are sent to the segment automation processor, which decides cohort memberships from them.';
$string['privacy:metadata:processor:address'] = 'Address';
$string['privacy:metadata:processor:alternatename'] = 'Alternate name';
$string['privacy:metadata:processor:auth'] = 'Authentication method';
$string['privacy:metadata:processor:calendartype'] = 'Calendar type';
$string['privacy:metadata:processor:city'] = 'City/town';
$string['privacy:metadata:processor:confirmed'] = 'Whether the account is confirmed';
$string['privacy:metadata:processor:country'] = 'Country';
$string['privacy:metadata:processor:currentlogin'] = 'Time of the current login';
$string['privacy:metadata:processor:customfields'] = 'Every custom user profile field, as profile_field_<shortname>';
$string['privacy:metadata:processor:department'] = 'Department';
$string['privacy:metadata:processor:description'] = 'Description';
$string['privacy:metadata:processor:email'] = 'Email address';
$string['privacy:metadata:processor:firstaccess'] = 'Time of the first access';
$string['privacy:metadata:processor:firstname'] = 'First name';
$string['privacy:metadata:processor:firstnamephonetic'] = 'First name - phonetic';
$string['privacy:metadata:processor:idnumber'] = 'ID number';
$string['privacy:metadata:processor:institution'] = 'Institution';
$string['privacy:metadata:processor:interests'] = 'Interests';
$string['privacy:metadata:processor:lang'] = 'Preferred language';
$string['privacy:metadata:processor:lastaccess'] = 'Time of the last access';
$string['privacy:metadata:processor:lastlogin'] = 'Time of the last login';
$string['privacy:metadata:processor:lastname'] = 'Last name';
$string['privacy:metadata:processor:lastnamephonetic'] = 'Last name - phonetic';
$string['privacy:metadata:processor:middlename'] = 'Middle name';
$string['privacy:metadata:processor:phone1'] = 'Phone';
$string['privacy:metadata:processor:phone2'] = 'Mobile phone';
$string['privacy:metadata:processor:suspended'] = 'Whether the account is suspended';
$string['privacy:metadata:processor:theme'] = 'Preferred theme';
$string['privacy:metadata:processor:timecreated'] = 'Time the account was created';
$string['privacy:metadata:processor:timemodified'] = 'Time the account was last modified';
$string['privacy:metadata:processor:timezone'] = 'Timezone';
$string['privacy:metadata:processor:username'] = 'Username';
$string['privacy:metadata:queue'] = 'Changes waiting to be sent to the segment automation processor, and changes it rejected.';
$string['privacy:metadata:queue:errormessage'] = 'Why the processor rejected the change';
$string['privacy:metadata:queue:occurredat'] = 'When the change happened';
$string['privacy:metadata:queue:payload'] = 'The user\'s full profile snapshot (standard and custom profile fields)';
$string['privacy:metadata:queue:status'] = 'Whether the change is waiting or was rejected';
$string['privacy:metadata:queue:targetid'] = 'The user\'s id in the processor (user id, ID number or username)';
$string['privacy:metadata:queue:userid'] = 'The user the change is about';
$string['segmentidmapping'] = 'Segment id';
$string['segmentidmapping_desc'] = 'Which cohort value is the segment id in the processor.';
$string['segmentsync:viewprofilefields'] = 'View custom profile field definitions through the web service';
$string['sending'] = 'Sending';
$string['siteid'] = 'Site id';
$string['siteid_desc'] = 'This Moodle site\'s id in the processor. It must equal the site_id of the token.';
$string['status'] = 'Status';
$string['statusdetails'] = 'Waiting to be sent: {$a->pending}. Rejected (kept with the reason): {$a->rejected}. Last error: {$a->lasterror}';
$string['taskpushqueue'] = 'Send user, cohort and profile field changes to the segment automation processor';
$string['timeout'] = 'Request time-out (seconds)';
$string['timeout_desc'] = 'How long one request to the processor may take.';
$string['token'] = 'Token';
$string['token_desc'] = 'A JWT issued by the processor for this site, with the roles ingest (or system) for user changes and site_admin (or system) for cohorts and profile fields.';
$string['useridmapping'] = 'User id';
$string['useridmapping_desc'] = 'Which user value is the user id in the processor. The user id never changes; ID number and username can, and a change makes a new user in the processor.';
