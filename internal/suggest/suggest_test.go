package suggest

import "testing"

func TestClosest(t *testing.T) {
	cases := []struct {
		name       string
		candidates []string
		want       string
	}{
		{"renew_befor", []string{"admin_dir", "renew_before"}, "renew_before"},
		{"pki-prd", []string{"pki", "pki-prod", "secret"}, "pki-prod"},
		{"completely_else", []string{"admin_dir", "renew_before"}, ""},
		{"ab", []string{"ax", "ay"}, "ax"},
		{"x", nil, ""},
	}
	for _, tc := range cases {
		if got := Closest(tc.name, tc.candidates); got != tc.want {
			t.Errorf("Closest(%q, %q) = %q, want %q", tc.name, tc.candidates, got, tc.want)
		}
	}
}
