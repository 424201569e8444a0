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
 * Checks of the plugin's files against Moodle's conventions that need no Moodle to verify.
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

use PHPUnit\Framework\TestCase;

/**
 * Headers, class locations, strings, declarations.
 */
final class PluginFilesTest extends TestCase {

    /**
     * The plugin's root directory.
     *
     * @return string
     */
    private static function root(): string {
        return realpath(__DIR__ . '/../..');
    }

    /**
     * Every PHP file of the plugin.
     *
     * @return string[]
     */
    private static function php_files(): array {
        $files = [];
        $iterator = new RecursiveIteratorIterator(new RecursiveDirectoryIterator(self::root(), FilesystemIterator::SKIP_DOTS));
        foreach ($iterator as $file) {
            if ($file->getExtension() === 'php') {
                $files[] = $file->getPathname();
            }
        }
        sort($files);
        return $files;
    }

    public function test_every_php_file_carries_the_gpl3_or_later_header(): void {
        $files = self::php_files();
        $this->assertGreaterThan(30, count($files));
        foreach ($files as $file) {
            $text = file_get_contents($file);
            $this->assertStringContainsString('either version 3 of the License, or', $text, $file);
            $this->assertStringContainsString('(at your option) any later version.', $text, $file);
            $this->assertStringContainsString('@license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later', $text,
                $file);
        }
    }

    public function test_classes_live_where_moodle_autoloads_them(): void {
        foreach (self::php_files() as $file) {
            $relative = substr($file, strlen(self::root()) + 1);
            if (strpos($relative, 'classes/') !== 0) {
                continue;
            }
            $parts = explode('/', substr($relative, strlen('classes/'), -strlen('.php')));
            $name = array_pop($parts);
            $namespace = implode('\\', array_merge(['local_segmentsync'], $parts));
            $text = file_get_contents($file);
            $this->assertMatchesRegularExpression('/^namespace ' . preg_quote($namespace, '/') . ';$/m', $text, $relative);
            $this->assertMatchesRegularExpression('/^(final |abstract )?(class|interface|trait) ' . $name . '\b/m', $text,
                $relative);
        }
    }

    public function test_every_string_used_is_defined(): void {
        $string = [];
        include(self::root() . '/lang/en/local_segmentsync.php');
        $used = [];
        foreach (self::php_files() as $file) {
            if (strpos($file, '/tests/') !== false) {
                continue;
            }
            preg_match_all("/(?:get_string|lang_string)\\('([a-z0-9_:]+)', 'local_segmentsync'/", file_get_contents($file), $m);
            $used = array_merge($used, $m[1]);
            preg_match_all("/'(privacy:metadata:[a-z:]+[a-z])'/", file_get_contents($file), $m);
            $used = array_merge($used, $m[1]);
        }
        foreach (self::privacy_sent_fields() as $field) {
            $used[] = 'privacy:metadata:processor:' . $field;
        }
        $this->assertGreaterThan(40, count(array_unique($used)));
        foreach (array_unique($used) as $identifier) {
            $this->assertArrayHasKey($identifier, $string, "string '$identifier' is used but not defined");
        }
        $keys = array_keys($string);
        $sorted = $keys;
        sort($sorted);
        $this->assertSame($sorted, $keys, 'Moodle keeps language strings in alphabetical order');
    }

    /**
     * SENT_FIELDS of the privacy provider, read from its source (its interfaces need Moodle to load).
     *
     * @return string[]
     */
    private static function privacy_sent_fields(): array {
        $source = file_get_contents(self::root() . '/classes/privacy/provider.php');
        preg_match('/SENT_FIELDS = \[(.*?)\];/s', $source, $m);
        preg_match_all("/'([a-z0-9]+)'/", $m[1], $fields);
        return $fields[1];
    }

    public function test_privacy_declares_every_field_that_is_sent(): void {
        $sent = array_merge(\local_segmentsync\local\snapshot_mapper::TEXT_FIELDS,
            \local_segmentsync\local\snapshot_mapper::BOOL_FIELDS, \local_segmentsync\local\snapshot_mapper::TIME_FIELDS,
            ['interests', 'customfields']);
        sort($sent);
        $declared = self::privacy_sent_fields();
        sort($declared);
        $this->assertSame($sent, $declared);
    }

    public function test_declarations_point_at_real_classes(): void {
        $tasks = null;
        include(self::root() . '/db/tasks.php');
        $this->assertTrue(is_subclass_of('\\' . $tasks[0]['classname'], \core\task\scheduled_task::class));

        $functions = null;
        include(self::root() . '/db/services.php');
        $this->assertArrayHasKey('local_segmentsync_get_profile_fields', $functions);
        $function = $functions['local_segmentsync_get_profile_fields'];
        $this->assertFileExists(self::root() . '/classes/external/get_profile_fields.php');
        $this->assertSame('local_segmentsync\\external\\get_profile_fields', $function['classname']);
        $this->assertSame('read', $function['type']);

        $capabilities = null;
        include(self::root() . '/db/access.php');
        $this->assertArrayHasKey($function['capabilities'], $capabilities);

        $plugin = new stdClass();
        include(self::root() . '/version.php');
        $this->assertSame('local_segmentsync', $plugin->component);
        $this->assertMatchesRegularExpression('/^20\d{8}$/', (string) $plugin->version);
    }

    public function test_install_xml_declares_every_column_the_recorder_writes(): void {
        $xml = simplexml_load_file(self::root() . '/db/install.xml');
        $this->assertSame('local/segmentsync/db', (string) $xml['PATH']);
        $columns = [];
        foreach ($xml->TABLES->TABLE as $table) {
            $this->assertSame('local_segmentsync_queue', (string) $table['NAME']);
            foreach ($table->FIELDS->FIELD as $field) {
                $columns[] = (string) $field['NAME'];
            }
        }
        $recorder = new ReflectionMethod(\local_segmentsync\local\recorder::class, 'row');
        $recorder->setAccessible(true);
        $instance = (new ReflectionClass(\local_segmentsync\local\recorder::class))->newInstanceWithoutConstructor();
        $clock = new ReflectionProperty(\local_segmentsync\local\recorder::class, 'clockms');
        $clock->setAccessible(true);
        $clock->setValue($instance, static function (): int {
            return 1;
        });
        $row = $recorder->invoke($instance, 'user', 'upsert', 1, 1);
        foreach (array_keys((array) $row) as $name) {
            $this->assertContains($name, $columns);
        }
    }
}
