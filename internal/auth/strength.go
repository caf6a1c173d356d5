package auth

import (
	"errors"
	"fmt"
	"strings"
)

// ErrWeakPassword marks an admin password refused at start.
var ErrWeakPassword = errors.New("admin password refused")

// checkPasswordStrength refuses an admin password that is short, long,
// made of a repeated unit or few distinct characters, a run of a keyboard
// row or of the alphabet or digits, or nothing but common words (such as
// "password", "admin", "changeme") with digits and symbols around them.
// It is a short deny-list, not a strength meter: the password still has
// to be chosen well; a generated one (the default) always passes.
func checkPasswordStrength(pw string) error {
	if len(pw) < 12 {
		return fmt.Errorf("%w: at least 12 characters are required", ErrWeakPassword)
	}
	if len(pw) > 72 {
		return fmt.Errorf("%w: at most 72 bytes are allowed", ErrWeakPassword)
	}
	lower := strings.ToLower(pw)
	if repeated(lower) {
		return fmt.Errorf("%w: it repeats the same characters; choose one with at least %d different characters and no repeated pattern", ErrWeakPassword, minDistinct)
	}
	for _, run := range weakRuns {
		if strings.Contains(strings.Repeat(run, len(lower)/len(run)+2), lower) {
			return fmt.Errorf("%w: it is a run of consecutive keys, letters or digits", ErrWeakPassword)
		}
	}
	for _, letters := range []string{lettersOf(trimNonLetters(lower), true), lettersOf(lower, false)} {
		if letters != "" && commonWords(letters) {
			return fmt.Errorf("%w: it is made of common words (such as %q) with digits or symbols; choose one that is not on a list of common passwords", ErrWeakPassword, commonPasswordWords[0])
		}
	}
	return nil
}

// minDistinct is the fewest different characters an admin password has.
const minDistinct = 5

// repeated reports a string that is a unit repeated ("abcabcabcabc"), or
// has fewer than minDistinct different characters ("aaaaaaaaaaab").
func repeated(s string) bool {
	distinct := map[rune]bool{}
	for _, r := range s {
		distinct[r] = true
	}
	if len(distinct) < minDistinct {
		return true
	}
	for n := 1; n <= len(s)/2; n++ {
		if len(s)%n == 0 && strings.Repeat(s[:n], len(s)/n) == s {
			return true
		}
	}
	return false
}

// weakRuns are sequences whose every stretch (wrapping around) is refused.
var weakRuns = []string{
	"0123456789", "9876543210",
	"abcdefghijklmnopqrstuvwxyz", "zyxwvutsrqponmlkjihgfedcba",
	"qwertyuiopasdfghjklzxcvbnm", "mnbvcxzlkjhgfdsapoiuytrewq",
	"1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/",
	"qwertzuiopasdfghjklyxcvbnm", "azertyuiopqsdfghjklmwxcvbn",
}

// commonPasswordWords are words that make up the commonest passwords; a
// password made only of them (repeated or joined) is refused.
var commonPasswordWords = []string{
	"password", "passwort", "passwd", "pass", "admin", "administrator", "root",
	"changeme", "change", "letmein", "welcome", "qwerty", "secret", "default",
	"outpost", "registry", "docker", "login", "master", "guest", "user", "test",
	"iloveyou", "monkey", "dragon", "sunshine", "football", "baseball",
	"superman", "trustno", "shadow", "princess", "access", "hello", "super",
}

// commonWords reports whether s splits entirely into common words.
func commonWords(s string) bool {
	ok := make([]bool, len(s)+1) // ok[i]: s[:i] splits
	ok[0] = true
	for i := 1; i <= len(s); i++ {
		for _, w := range commonPasswordWords {
			if len(w) <= i && ok[i-len(w)] && s[i-len(w):i] == w {
				ok[i] = true
				break
			}
		}
	}
	return ok[len(s)]
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' }

// trimNonLetters drops the digits and symbols around a password
// ("P@ssw0rd2024!" → "p@ssw0rd").
func trimNonLetters(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return !isLetter(r) })
}

// leet undoes the usual letter substitutions.
var leet = map[rune]rune{'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', '$': 's', '!': 'i'}

// lettersOf keeps the letters of s, after undoing substitutions when
// withLeet is set.
func lettersOf(s string, withLeet bool) string {
	var b strings.Builder
	for _, r := range s {
		if l, ok := leet[r]; ok && withLeet {
			r = l
		}
		if isLetter(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}
