package auth

import (
	"fmt"
	"slices"
	"time"
)

// PasswordView describes a password; Value is set only in the answer that
// generated it.
type PasswordView struct {
	Name    PasswordName `json:"name"`
	Value   string       `json:"value,omitempty"`
	Created time.Time    `json:"creationTime"`
	Expiry  *time.Time   `json:"expiry,omitempty"`
}

// Credentials holds a token's passwords.
type Credentials struct {
	Passwords []PasswordView `json:"passwords"`
}

// TokenView is a token as the management API shows it: never a hash.
type TokenView struct {
	Name        string      `json:"name"`
	ScopeMap    string      `json:"scopeMapName"`
	Status      TokenStatus `json:"status"`
	Created     time.Time   `json:"creationDate"`
	Credentials Credentials `json:"credentials"`
}

// ViewTokenWith shows a token with the clear values of the passwords just
// generated (by slot); the others show no value.
func ViewTokenWith(t *Token, values map[PasswordName]string) TokenView {
	v := TokenView{Name: t.Name, ScopeMap: t.ScopeMap, Status: t.Status, Created: t.Created, Credentials: Credentials{Passwords: []PasswordView{}}}
	for _, p := range t.Passwords {
		v.Credentials.Passwords = append(v.Credentials.Passwords, PasswordView{Name: p.Name, Value: values[p.Name], Created: p.Created, Expiry: p.Expiry})
	}
	return v
}

// ViewToken shows a token without any password value.
func ViewToken(t *Token) TokenView { return ViewTokenWith(t, nil) }

// NewPassword generates a password for slot n, valid for days (0: no
// expiry), returning the stored form and the clear value.
func NewPassword(n PasswordName, now time.Time, days int) (Password, string, error) {
	if days < 0 || days > 3650 {
		return Password{}, "", fmt.Errorf("%w: expirationInDays %d is outside 0..3650", ErrInvalid, days)
	}
	value, err := GeneratePassword()
	if err != nil {
		return Password{}, "", err
	}
	hash, err := HashPassword(value)
	if err != nil {
		return Password{}, "", err
	}
	p := Password{Name: n, Hash: hash, Created: now}
	if days > 0 {
		exp := now.AddDate(0, 0, days)
		p.Expiry = &exp
	}
	return p, value, nil
}

// GenerateCredential replaces one password of token name and returns the
// token's view with only that password, and its clear value (as az acr
// token credential generate shows it).
func (tx *Tx) GenerateCredential(name string, slot PasswordName, days int) (TokenView, error) {
	old, err := tx.Token(name)
	if err != nil {
		return TokenView{}, err
	}
	if slot != Password1 && slot != Password2 {
		return TokenView{}, fmt.Errorf("%w: password %q: want password1 or password2", ErrInvalid, slot)
	}
	p, value, err := NewPassword(slot, tx.Now(), days)
	if err != nil {
		return TokenView{}, err
	}
	t := *old
	t.Passwords = nil
	for _, q := range old.Passwords {
		if q.Name != slot {
			t.Passwords = append(t.Passwords, q)
		}
	}
	t.Passwords = append(t.Passwords, p)
	if t.Passwords[0].Name == Password2 && len(t.Passwords) == 2 {
		t.Passwords[0], t.Passwords[1] = t.Passwords[1], t.Passwords[0]
	}
	if err := tx.PutToken(&t); err != nil {
		return TokenView{}, err
	}
	v := ViewTokenWith(&t, map[PasswordName]string{slot: value})
	for _, pv := range v.Credentials.Passwords {
		if pv.Name == slot {
			v.Credentials.Passwords = []PasswordView{pv}
			break
		}
	}
	return v, nil
}

// MergeGrants adds the actions of add to grants and takes those of remove
// away, dropping repositories left without actions (a grant in remove
// without actions removes its repository).
func MergeGrants(grants, add, remove []RepositoryGrant) []RepositoryGrant {
	out := make([]RepositoryGrant, 0, len(grants)+len(add))
	for _, g := range grants {
		out = append(out, RepositoryGrant{Repository: g.Repository, Actions: slices.Clone(g.Actions)})
	}
	find := func(repo string) int {
		return slices.IndexFunc(out, func(g RepositoryGrant) bool { return g.Repository == repo })
	}
	for _, g := range add {
		i := find(g.Repository)
		if i < 0 {
			out = append(out, RepositoryGrant{Repository: g.Repository})
			i = len(out) - 1
		}
		for _, act := range g.Actions {
			if !slices.Contains(out[i].Actions, act) {
				out[i].Actions = append(out[i].Actions, act)
			}
		}
	}
	for _, g := range remove {
		i := find(g.Repository)
		if i < 0 {
			continue
		}
		if len(g.Actions) == 0 {
			out[i].Actions = nil
		}
		out[i].Actions = slices.DeleteFunc(out[i].Actions, func(act Action) bool { return slices.Contains(g.Actions, act) })
	}
	return slices.DeleteFunc(out, func(g RepositoryGrant) bool { return len(g.Actions) == 0 })
}
