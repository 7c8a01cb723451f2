package store

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// readOnlyDirEnv names the directory TestSQLiteReadOnlyDir's child process
// opens; set only in that child.
const readOnlyDirEnv = "CRMGATE_TEST_READONLY_DIR"

// TestSQLiteReadOnlyDir: opening an SQLite store whose directory is not
// writable (a container's read-only root filesystem without a volume) fails
// at start with a *DirNotWritableError naming the directory and saying it
// needs a writable volume, for a new file and for an existing one, and
// creates nothing. Permission bits do not bind root, so as root the open
// runs in a child process as the image's nonroot user, 65532.
func TestSQLiteReadOnlyDir(t *testing.T) {
	if dir := os.Getenv(readOnlyDirEnv); dir != "" {
		openReadOnly(t, dir)
		return
	}
	dir, err := os.MkdirTemp("", "crmgate-readonly-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755); os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	db, err := Open(t.Context(), "sqlite:"+filepath.Join(data, "existing.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, f := range []string{"existing.db", "existing.db-wal", "existing.db-shm"} {
		os.Chmod(filepath.Join(data, f), 0o666) // only the directory is read-only
	}
	if err := os.Chmod(data, 0o555); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		openReadOnly(t, data)
		return
	}

	// As root: the test binary, copied where user 65532 may run it, runs
	// this test again as that user.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "store.test")
	copyFile(t, self, bin)
	cmd := exec.Command(bin, "-test.run=^TestSQLiteReadOnlyDir$", "-test.v")
	cmd.Env = append(os.Environ(), readOnlyDirEnv+"="+data)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestSQLiteReadOnlyDir") {
		t.Fatalf("as user 65532: %v\n%s", err, out)
	}
}

// openReadOnly opens a new and an existing database in dir, which the
// process cannot write.
func openReadOnly(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"new.db", "existing.db"} {
		db, err := Open(t.Context(), "sqlite:"+filepath.Join(dir, name))
		if err == nil {
			db.Close()
			t.Fatalf("%s in a read-only directory opened", name)
		}
		var nw *DirNotWritableError
		if !errors.As(err, &nw) || nw.Dir != dir || !errors.Is(err, os.ErrPermission) {
			t.Errorf("%s: %v (%T), want a DirNotWritableError for %s", name, err, err, dir)
		}
		for _, want := range []string{dir, "not writable", "writable volume", "CRMGATE_DATABASE_URL"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", name, err, want)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new.db")); !os.IsNotExist(err) {
		t.Errorf("new.db was created: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
