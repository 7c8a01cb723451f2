package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSQLiteFileMode: a new SQLite database, its WAL and its shared-memory
// file are readable by their owner only, whichever URL form names it; an
// existing file keeps the permissions its operator gave it; a read-only or
// read-write URI does not create a missing file.
func TestSQLiteFileMode(t *testing.T) {
	dir := t.TempDir()
	for i, form := range []string{"sqlite:%s", "%s", "file:%s?mode=rwc", "file://%s"} {
		path := filepath.Join(dir, "new"+string(rune('a'+i))+".db")
		db, err := Open(t.Context(), strings.Replace(form, "%s", path, 1))
		if err != nil {
			t.Fatalf("%s: %v", form, err)
		}
		if err := db.CreateUser(t.Context(), newUser("ana")); err != nil {
			t.Fatal(err) // a write, so that the WAL exists
		}
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			st, err := os.Stat(f)
			if err != nil {
				t.Fatalf("%s: %v", form, err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s: %s has mode %v, want 0600", form, filepath.Base(f), st.Mode().Perm())
			}
		}
		db.Close()
	}

	existing := filepath.Join(dir, "existing.db")
	if err := os.WriteFile(existing, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(existing, 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	db, err := Open(t.Context(), "sqlite:"+existing)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if st, _ := os.Stat(existing); st.Mode().Perm() != 0o640 {
		t.Errorf("an existing file's mode changed to %v", st.Mode().Perm())
	}

	for _, mode := range []string{"ro", "rw"} {
		missing := filepath.Join(dir, "missing-"+mode+".db")
		if db, err := Open(t.Context(), "file:"+missing+"?mode="+mode); err == nil {
			db.Close()
			t.Errorf("mode=%s opened a missing file", mode)
		}
		if _, err := os.Stat(missing); !os.IsNotExist(err) {
			t.Errorf("mode=%s created the file: %v", mode, err)
		}
	}

	if _, err := Open(t.Context(), "sqlite:"+filepath.Join(dir, "no", "such", "dir.db")); err == nil || !strings.Contains(err.Error(), "store: create") {
		t.Errorf("a file in a missing directory: %v", err)
	}
}
