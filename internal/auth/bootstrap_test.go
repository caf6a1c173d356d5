package auth

import (
	"path/filepath"
	"testing"
	"time"
)

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
	if _, err := BootstrapAdmin(store, dir, first); err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(store, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if svc.verifyPassword(AdminUser, first, now) == nil {
		t.Fatal("the first password is refused")
	}
	// The restart: bootstrap leaves the stored hash, the recheck replaces it.
	if _, err := BootstrapAdmin(store, dir, second); err != nil {
		t.Fatal(err)
	}
	svc, err = NewService(store, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.RecheckAdmin(second + "\n"); err != nil {
		t.Fatal(err)
	}
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
}
