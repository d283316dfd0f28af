package dag

import (
	"reflect"
	"testing"
)

func TestGraphCycles(t *testing.T) {
	tests := []struct {
		name  string
		edges [][2]string
		want  [][]string
	}{
		{"none", [][2]string{{"b", "a"}, {"c", "b"}, {"c", "a"}}, nil},
		{"two", [][2]string{{"a", "b"}, {"b", "a"}}, [][]string{{"a", "b"}}},
		{"self", [][2]string{{"a", "a"}}, [][]string{{"a"}}},
		{"three and a tail", [][2]string{{"a", "b"}, {"b", "c"}, {"c", "a"}, {"d", "a"}}, [][]string{{"a", "b", "c"}}},
		{"two separate", [][2]string{{"a", "b"}, {"b", "a"}, {"c", "d"}, {"d", "c"}}, [][]string{{"a", "b"}, {"c", "d"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New()
			for _, v := range []string{"a", "b", "c", "d"} {
				g.Add(v)
			}
			for _, e := range tt.edges {
				g.Connect(e[0], e[1])
			}
			if got := g.Cycles(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Cycles() = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestGraphOrder(t *testing.T) {
	g := New()
	for _, v := range []string{"verify", "write", "issue", "other"} {
		g.Add(v)
	}
	g.Connect("verify", "write")
	g.Connect("write", "issue")
	// Among ready vertices the earliest added goes first: write becomes
	// ready (once issue is done) before other is picked.
	want := []string{"issue", "write", "verify", "other"}
	for i := 0; i < 50; i++ { // map iteration inside must not make the order vary
		if got := g.Order(); !reflect.DeepEqual(got, want) {
			t.Fatalf("Order() = %#v, want %#v", got, want)
		}
	}
	if got := g.DependsOn("verify"); !reflect.DeepEqual(got, []string{"write"}) {
		t.Errorf("DependsOn(verify) = %#v", got)
	}
}
