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
 * Stand-in for Moodle's $DB (lib/dml/moodle_database.php), only the methods the plugin calls.
 *
 * NOT Moodle: an in-memory table store for the standalone tests. Behaviour copied from the DML API:
 * get_records() returns rows keyed by id, get_record() returns false when there is no row, insert_record()
 * ignores a given id and returns the new one, delete_records_list() deletes by a field's values.
 * Stricter than Moodle on purpose: a write to a table declared in db/install.xml must use its columns,
 * respect NOT NULL and char lengths (Moodle would drop unknown columns silently, or a strict database
 * would refuse the write at run time).
 *
 * @package    local_segmentsync
 * @copyright  2026 Segment automation contributors
 * @license    https://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

/**
 * In-memory tables with the subset of moodle_database used by the plugin.
 */
class fake_database {

    /** @var array<string,array<int,stdClass>> table => id => row */
    public $tables = [];

    /** @var array<string,int> next id per table */
    private $sequences = [];

    /** @var array<string,array<string,array>> schema from install.xml: table => column => [type, length, notnull, default] */
    private $schema = [];

    /** @var string[] every write, for tests that check what was written */
    public $writes = [];

    /**
     * Loads the tables declared in an XMLDB file, so writes to them are checked.
     *
     * @param string $path
     */
    public function load_schema(string $path): void {
        $xml = simplexml_load_file($path);
        foreach ($xml->TABLES->TABLE as $table) {
            $name = (string) $table['NAME'];
            $this->schema[$name] = [];
            foreach ($table->FIELDS->FIELD as $field) {
                $this->schema[$name][(string) $field['NAME']] = [
                    'type' => (string) $field['TYPE'],
                    'length' => (int) $field['LENGTH'],
                    'notnull' => (string) $field['NOTNULL'] === 'true',
                    'default' => isset($field['DEFAULT']) ? (string) $field['DEFAULT'] : null,
                    'sequence' => (string) $field['SEQUENCE'] === 'true',
                ];
            }
            $this->tables[$name] = $this->tables[$name] ?? [];
        }
    }

    /**
     * Adds a row as a test fixture (no schema check).
     *
     * @param string $table
     * @param array|stdClass $row with an id
     */
    public function seed(string $table, $row): void {
        $row = (object) $row;
        $this->tables[$table][(int) $row->id] = $row;
        $this->sequences[$table] = max($this->sequences[$table] ?? 1, (int) $row->id + 1);
    }

    /**
     * As moodle_database::get_record(): the row or false (IGNORE_MISSING).
     *
     * @param string $table
     * @param array $conditions
     * @param string $fields
     * @param int $strictness
     * @return stdClass|false
     */
    public function get_record($table, array $conditions, $fields = '*', $strictness = IGNORE_MISSING) {
        $rows = $this->select($table, $conditions);
        if (!$rows) {
            if ($strictness === MUST_EXIST) {
                throw new dml_missing_record_exception($table);
            }
            return false;
        }
        return clone reset($rows);
    }

    /**
     * As moodle_database::get_records(): rows keyed by id; sorts 'id ASC' / 'id DESC' only.
     *
     * @param string $table
     * @param array|null $conditions
     * @param string $sort
     * @param string $fields
     * @param int $limitfrom
     * @param int $limitnum
     * @return stdClass[]
     */
    public function get_records($table, ?array $conditions = null, $sort = '', $fields = '*', $limitfrom = 0,
            $limitnum = 0) {
        $rows = $this->select($table, $conditions ?? []);
        if ($sort === 'id DESC') {
            krsort($rows);
        } else if ($sort === '' || $sort === 'id ASC' || $sort === 'id') {
            ksort($rows);
        } else {
            throw new coding_exception("fake_database cannot sort by '$sort'");
        }
        $rows = array_slice($rows, (int) $limitfrom, $limitnum > 0 ? (int) $limitnum : null, true);
        return array_map(static function ($row) {
            return clone $row;
        }, $rows);
    }

    /**
     * As moodle_database::get_recordset(): here an array.
     *
     * @param string $table
     * @param array|null $conditions
     * @param string $sort
     * @return stdClass[]
     */
    public function get_recordset($table, ?array $conditions = null, $sort = '') {
        return $this->get_records($table, $conditions, $sort);
    }

    /**
     * As moodle_database::count_records().
     *
     * @param string $table
     * @param array|null $conditions
     * @return int
     */
    public function count_records($table, ?array $conditions = null) {
        return count($this->select($table, $conditions ?? []));
    }

    /**
     * As moodle_database::insert_record(): a given id is ignored, the new id is returned.
     *
     * @param string $table
     * @param array|stdClass $dataobject
     * @param bool $returnid
     * @param bool $bulk
     * @return int|bool
     */
    public function insert_record($table, $dataobject, $returnid = true, $bulk = false) {
        $row = (array) $dataobject;
        unset($row['id']);
        $row = $this->check_write($table, $row, true);
        $id = $this->sequences[$table] ?? 1;
        $this->sequences[$table] = $id + 1;
        $row['id'] = $id;
        $this->tables[$table][$id] = (object) $row;
        $this->writes[] = "insert $table $id";
        return $returnid ? $id : true;
    }

    /**
     * As moodle_database::update_record(): the object must carry the id.
     *
     * @param string $table
     * @param array|stdClass $dataobject
     * @param bool $bulk
     * @return bool
     */
    public function update_record($table, $dataobject, $bulk = false) {
        $row = (array) $dataobject;
        if (empty($row['id']) || !isset($this->tables[$table][(int) $row['id']])) {
            throw new dml_write_exception("update_record($table) without an existing id");
        }
        $id = (int) $row['id'];
        unset($row['id']);
        $row = $this->check_write($table, $row, false);
        foreach ($row as $name => $value) {
            $this->tables[$table][$id]->$name = $value;
        }
        $this->writes[] = "update $table $id";
        return true;
    }

    /**
     * As moodle_database::set_field().
     *
     * @param string $table
     * @param string $newfield
     * @param mixed $newvalue
     * @param array|null $conditions
     * @return bool
     */
    public function set_field($table, $newfield, $newvalue, ?array $conditions = null) {
        $this->check_write($table, [$newfield => $newvalue], false);
        foreach ($this->select($table, $conditions ?? []) as $id => $row) {
            $this->tables[$table][$id]->$newfield = $newvalue;
        }
        return true;
    }

    /**
     * As moodle_database::delete_records_list().
     *
     * @param string $table
     * @param string $field
     * @param array $values
     * @return bool
     */
    public function delete_records_list($table, $field, array $values) {
        $values = array_map('strval', $values);
        foreach ($this->tables[$table] ?? [] as $id => $row) {
            if (in_array((string) $row->$field, $values, true)) {
                unset($this->tables[$table][$id]);
            }
        }
        $this->writes[] = "delete $table " . implode(',', $values);
        return true;
    }

    /**
     * As moodle_database::delete_records().
     *
     * @param string $table
     * @param array|null $conditions
     * @return bool
     */
    public function delete_records($table, ?array $conditions = null) {
        foreach (array_keys($this->select($table, $conditions ?? [])) as $id) {
            unset($this->tables[$table][$id]);
        }
        return true;
    }

    /**
     * Rows matching equality conditions, keyed by id.
     *
     * @param string $table
     * @param array $conditions
     * @return stdClass[]
     */
    private function select(string $table, array $conditions): array {
        $rows = [];
        foreach ($this->tables[$table] ?? [] as $id => $row) {
            foreach ($conditions as $name => $value) {
                if (!property_exists($row, $name) || (string) $row->$name !== (string) $value) {
                    continue 2;
                }
            }
            $rows[$id] = $row;
        }
        return $rows;
    }

    /**
     * Checks a write against the loaded schema and fills defaults on insert.
     *
     * @param string $table
     * @param array $row
     * @param bool $insert
     * @return array
     */
    private function check_write(string $table, array $row, bool $insert): array {
        if (!isset($this->schema[$table])) {
            return $row;
        }
        $columns = $this->schema[$table];
        foreach ($row as $name => $value) {
            if (!isset($columns[$name])) {
                throw new dml_write_exception("column $table.$name does not exist in install.xml");
            }
            $column = $columns[$name];
            if ($value === null && $column['notnull']) {
                throw new dml_write_exception("column $table.$name is NOT NULL");
            }
            if ($value !== null && $column['type'] === 'char' && mb_strlen((string) $value) > $column['length']) {
                throw new dml_write_exception("value of $table.$name is longer than {$column['length']}");
            }
            if ($value !== null && $column['type'] === 'int' && !is_int($value) && !ctype_digit((string) $value)) {
                throw new dml_write_exception("value of $table.$name is not an integer: " . var_export($value, true));
            }
        }
        if ($insert) {
            foreach ($columns as $name => $column) {
                if ($column['sequence'] || array_key_exists($name, $row)) {
                    continue;
                }
                if ($column['notnull'] && $column['default'] === null) {
                    throw new dml_write_exception("insert into $table lacks NOT NULL column $name");
                }
                $row[$name] = $column['default'];
            }
        }
        return $row;
    }
}
