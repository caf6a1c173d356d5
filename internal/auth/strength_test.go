package auth

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestAdminPasswordDenyList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pw   string
		weak bool
	}{
		{"short-pw", true},
		{"password", true},
		{"admin", true},
		{"changeme", true},
		{"12345678", true},
		{"aaaaaaaaaaaa", true},
		{"aaaaaaaaaaaaaaaaaaaaaaab", true},
		{"abcabcabcabc", true},
		{"121212121212", true},
		{"passwordpassword", true},
		{"Password1234", true},
		{"P@ssw0rd2024!", true},
		{"changemechangeme", true},
		{"ChangeMe123456", true},
		{"admin@admin#2024", true},
		{"administrator1", true},
		{"letmein-letmein", true},
		{"adminpassword!!", true},
		{"outpost-registry", true},
		{"123456789012", true},
		{"0987654321098", true},
		{"qwertyuiopasdf", true},
		{"abcdefghijklmnop", true},
		{"1qaz2wsx3edc4rfv", true},
		// The passwords the tests and scripts of this repository use, and
		// ordinary good ones, pass.
		{"admin-password-for-authz-tests", false},
		{"admin-password-for-tests", false},
		{"admin-password-for-management-tests", false},
		{"admin-password-for-cli-tests", false},
		{"e2e-admin-password", false},
		{"conformance-admin-password", false},
		{"outpost-bench-password", false},
		{"first-admin-password", false},
		{"second-admin-password", false},
		{"correct horse battery staple", false},
		{"Tr0ub4dor&3-xk", false},
		{"9f8Qm2LzW7pR", false},
	} {
		err := checkPasswordStrength(tc.pw)
		if got := err != nil; got != tc.weak {
			t.Errorf("%q: got refused=%v (%v), want %v", tc.pw, got, err, tc.weak)
		}
		if err != nil && !errors.Is(err, ErrWeakPassword) {
			t.Errorf("%q: error %v does not wrap ErrWeakPassword", tc.pw, err)
		}
	}
	for range 20 {
		pw, err := GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if err := checkPasswordStrength(pw); err != nil {
			t.Errorf("generated password %q refused: %v", pw, err)
		}
	}
}

// TestBootstrapRefusesWeakAdminPassword: a weak explicit admin password is
// refused at start, on the first start and on a restart, and leaves the
// stored hash alone.
func TestBootstrapRefusesWeakAdminPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store, err := OpenStore(filepath.Join(dir, "identity.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = store.Close() }()
	if _, _, err := BootstrapAdmin(store, dir, "changemechangeme\n"); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("first start with a weak password: got %v, want ErrWeakPassword", err)
	}
	if h := store.AdminHash(); h != "" {
		t.Fatalf("a hash was stored for the refused password: %q", h)
	}
	if _, pw, err := BootstrapAdmin(store, dir, "first-admin-password"); err != nil || pw != "first-admin-password" {
		t.Fatalf("first start: password %q, %v", pw, err)
	}
	if err := store.Update(func(tx *Tx) error { tx.SetAdminHash("$2a$10$stored"); return nil }); err != nil {
		t.Fatal(err)
	}
	h := store.AdminHash()
	if _, _, err := BootstrapAdmin(store, dir, "Password1234"); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("restart with a weak password: got %v, want ErrWeakPassword", err)
	}
	if store.AdminHash() != h {
		t.Fatal("the stored hash changed after a refused password")
	}
}
