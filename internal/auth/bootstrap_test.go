package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bootstrap runs the start sequence of a server: BootstrapAdmin, the
// service, PrimeAdmin, and RecheckAdmin when recheck is set.
func bootstrap(t *testing.T, store *Store, dir, explicit string, recheck bool) (*Service, string) {
	t.Helper()
	written, pw, err := BootstrapAdmin(store, dir, explicit)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(store, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	svc.PrimeAdmin(pw)
	if recheck {
		if err := svc.RecheckAdmin(pw); err != nil {
			t.Fatal(err)
		}
	}
	return svc, written
}

// A restart with another OUTPOST_ADMIN_PASSWORD makes it the admin
// password (checked after start-up by RecheckAdmin); the old one stops
// working.
func TestAdminPasswordChangedOnRestart(t *testing.T) {
	dir := t.TempDir()
	store, err := OpenStore(filepath.Join(dir, "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	const first, second = "first-admin-password", "second-admin-password"
	svc, _ := bootstrap(t, store, dir, first, true)
	now := time.Now()
	if svc.verifyPassword(AdminUser, first, now) == nil {
		t.Fatal("the first password is refused")
	}
	// The restart: bootstrap leaves the stored hash, the recheck replaces it.
	svc, _ = bootstrap(t, store, dir, second+"\n", true)
	if svc.verifyPassword(AdminUser, second, now) == nil {
		t.Fatal("the new password is refused")
	}
	if svc.verifyPassword(AdminUser, first, now) != nil {
		t.Fatal("the old password still works")
	}
	// An unchanged password keeps the stored hash.
	h := store.AdminHash()
	if err := svc.RecheckAdmin(second); err != nil || store.AdminHash() != h {
		t.Fatalf("recheck of the same password: %v, hash changed %v", err, store.AdminHash() != h)
	}
	// A service that was not primed (a restart without a password) admits
	// the stored one through its hash alone.
	svc, _ = bootstrap(t, store, dir, "", true)
	if svc.verifyPassword(AdminUser, second, now) == nil {
		t.Fatal("the stored password is refused after a restart without one")
	}
}

// The admin password of a first start is admitted before its bcrypt hash
// is stored, without a bcrypt; a wrong one is not; registry tokens wait for
// the stored hash (they carry its fingerprint); a generated password is
// written to the data directory and admitted the same way.
func TestAdminPrimedBeforeHash(t *testing.T) {
	t.Parallel()
	for _, explicit := range []string{"first-admin-password", ""} {
		dir := t.TempDir()
		store, err := OpenStore(filepath.Join(dir, "identity.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = store.Close() }()
		svc, written := bootstrap(t, store, dir, explicit, false)
		pw := explicit
		if explicit == "" {
			b, err := os.ReadFile(written)
			if err != nil {
				t.Fatalf("generated password file: %v", err)
			}
			pw = strings.TrimSpace(string(b))
		}
		if store.AdminHash() != "" {
			t.Fatal("a hash was stored on the critical path of the start")
		}
		now := time.Now()
		if svc.verifyPassword(AdminUser, pw, now) == nil {
			t.Fatalf("the password of this start (%q) is refused before its hash is stored", explicit)
		}
		if n := svc.verifier.compared.Load(); n != 0 {
			t.Fatalf("admitting the primed password ran %d bcrypt comparisons, want 0", n)
		}
		if svc.verifyPassword(AdminUser, pw+"x", now) != nil {
			t.Fatal("a wrong admin password is admitted")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		svc.settleAdmin(ctx)
		if ctx.Err() == nil {
			t.Fatal("token issue did not wait for the admin hash")
		}
		cancel()
		done := make(chan error, 1)
		go func() { done <- svc.RecheckAdmin(pw) }()
		svc.settleAdmin(context.Background())
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if store.AdminHash() == "" {
			t.Fatal("no admin hash stored after the recheck")
		}
		if svc.verifyPassword(AdminUser, pw, now) == nil {
			t.Fatal("the password is refused once its hash is stored")
		}
	}
}
