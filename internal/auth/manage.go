package auth

import "fmt"

// CreateToken creates the token of req (and its scope map
// "<name>-scope-map" when req gives repositories) and returns it with the
// clear values of its passwords, shown only this once. The management API
// and the dashboard both call it.
func (s *Store) CreateToken(req TokenRequest) (TokenView, error) {
	status := StatusEnabled
	if req.Status != "" {
		var err error
		if status, err = ParseTokenStatus(req.Status); err != nil {
			return TokenView{}, err
		}
	}
	if (req.ScopeMap == "") == (len(req.Repositories) == 0) {
		return TokenView{}, fmt.Errorf("%w: give either scopeMapName or repositories", ErrInvalid)
	}
	values := map[PasswordName]string{}
	var view TokenView
	err := s.Update(func(tx *Tx) error {
		if _, err := tx.Token(req.Name); err == nil {
			return fmt.Errorf("%w: token %q", ErrExists, req.Name)
		}
		t := &Token{Name: req.Name, ScopeMap: req.ScopeMap, Status: status}
		if len(req.Repositories) > 0 {
			m := &ScopeMap{Name: req.Name + "-scope-map", Description: "Scope map of token " + req.Name, Repositories: req.Repositories}
			if _, err := tx.ScopeMap(m.Name); err == nil {
				return fmt.Errorf("%w: scope map %q", ErrExists, m.Name)
			}
			if err := tx.PutScopeMap(m); err != nil {
				return err
			}
			t.ScopeMap = m.Name
		}
		if !req.NoPasswords {
			for _, n := range []PasswordName{Password1, Password2} {
				p, v, err := NewPassword(n, tx.Now(), req.ExpirationInDays)
				if err != nil {
					return err
				}
				t.Passwords = append(t.Passwords, p)
				values[n] = v
			}
		}
		if err := tx.PutToken(t); err != nil {
			return err
		}
		view = ViewTokenWith(t, values)
		return nil
	})
	return view, err
}

// UpdateToken changes a token's scope map or status.
func (s *Store) UpdateToken(name string, req TokenUpdate) (TokenView, error) {
	var view TokenView
	err := s.Update(func(tx *Tx) error {
		old, err := tx.Token(name)
		if err != nil {
			return err
		}
		t := *old
		if req.ScopeMap != "" {
			t.ScopeMap = req.ScopeMap
		}
		if req.Status != "" {
			if t.Status, err = ParseTokenStatus(req.Status); err != nil {
				return err
			}
		}
		if err := tx.PutToken(&t); err != nil {
			return err
		}
		view = ViewToken(&t)
		return nil
	})
	return view, err
}

// CreateScopeMap creates the scope map of req; one of that name must not
// exist.
func (s *Store) CreateScopeMap(req ScopeMapRequest) (*ScopeMap, error) {
	m := &ScopeMap{Name: req.Name, Description: req.Description, Repositories: req.Repositories}
	err := s.Update(func(tx *Tx) error {
		if _, err := tx.ScopeMap(m.Name); err == nil {
			return fmt.Errorf("%w: scope map %q", ErrExists, m.Name)
		}
		return tx.PutScopeMap(m)
	})
	return m, err
}
