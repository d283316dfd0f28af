package dag

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// walkRepeats is how often the concurrency tests repeat a walk: the order
// in which tasks end is not deterministic.
const walkRepeats = 200

// graphOf builds a graph of the vertices, in that order, and the edges
// (from depends on to).
func graphOf(vertices string, edges ...string) *Graph {
	g := New()
	for _, v := range vertices {
		g.Add(string(v))
	}
	for _, e := range edges {
		g.Connect(e[:1], e[1:])
	}
	return g
}

func setOf(names string) func(string) bool {
	return func(name string) bool { return slices.Contains([]rune(names), []rune(name)[0]) }
}

// sequence walks one task at a time and returns the vertices in the order
// they started, and those that never did.
func sequence(g *Graph, w Walker, hold string) (started, notStarted []string) {
	w.Parallelism = 1
	notStarted = w.Walk(g, func(name string) Task {
		started = append(started, name)
		return func() Done {
			return func() (bool, Task) { return !setOf(hold)(name), nil }
		}
	})
	return started, notStarted
}

func TestWalkSequence(t *testing.T) {
	// a depends on b, b on c; d stands alone; e depends on a and d.
	chain := func() *Graph { return graphOf("abcde", "ab", "bc", "ea", "ed") }
	rank := func(order string) func(string) int {
		return func(name string) int { return indexIn(order, name) }
	}
	tests := []struct {
		name       string
		g          *Graph
		w          Walker
		hold       string // vertices whose Done holds their waiters
		started    []string
		notStarted []string
	}{
		{name: "insertion order breaks ties", g: chain(), started: []string{"c", "b", "a", "d", "e"}},
		{name: "priority first", g: chain(), w: Walker{Priority: rank("dcbae")},
			started: []string{"d", "c", "b", "a", "e"}},
		{name: "reverse", g: chain(), w: Walker{Reverse: true}, started: []string{"e", "a", "b", "c", "d"}},
		{name: "reverse with priority", g: chain(), w: Walker{Reverse: true, Priority: rank("edabc")},
			started: []string{"e", "d", "a", "b", "c"}},
		{name: "held waiters never start", g: chain(), hold: "b",
			started: []string{"c", "b", "d"}, notStarted: []string{"a", "e"}},
		{name: "held in reverse", g: chain(), w: Walker{Reverse: true}, hold: "a",
			started: []string{"e", "a", "d"}, notStarted: []string{"b", "c"}},
		// Without Through, a does not wait for c through b, which is not
		// visited: the edges to b are ignored.
		{name: "subset ignores the others", g: chain(), w: Walker{Visit: setOf("ace")},
			started: []string{"a", "c", "e"}},
		{name: "subset waits through the others", g: chain(), w: Walker{Visit: setOf("ace"), Through: true},
			started: []string{"c", "a", "e"}},
		{name: "subset waits through the others in reverse", g: chain(), w: Walker{Visit: setOf("ace"), Reverse: true, Through: true},
			started: []string{"e", "a", "c"}},
		{name: "held through the others", g: chain(), w: Walker{Visit: setOf("ace"), Through: true}, hold: "c",
			started: []string{"c"}, notStarted: []string{"a", "e"}},
		{name: "held and ignored", g: chain(), w: Walker{Visit: setOf("ace")}, hold: "c",
			started: []string{"a", "c", "e"}},
		{name: "a cycle never starts", g: graphOf("abc", "ab", "ba", "cb"), started: nil, notStarted: []string{"a", "b", "c"}},
		{name: "beside a cycle", g: graphOf("abcd", "ab", "ba", "dc"), started: []string{"c", "d"}, notStarted: []string{"a", "b"}},
		{name: "empty", g: New()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started, notStarted := sequence(tt.g, tt.w, tt.hold)
			if !reflect.DeepEqual(started, tt.started) {
				t.Errorf("started %#v, want %#v", started, tt.started)
			}
			if !reflect.DeepEqual(notStarted, tt.notStarted) {
				t.Errorf("not started %#v, want %#v", notStarted, tt.notStarted)
			}
		})
	}
}

func indexIn(order, name string) int {
	for i, r := range order {
		if string(r) == name {
			return i
		}
	}
	return -1
}

// TestWalkStop: once Stop says so no vertex starts; a task without one
// still runs.
func TestWalkStop(t *testing.T) {
	g := graphOf("abcd", "ba")
	var started []string
	stop := false
	notStarted := Walker{Stop: func() bool { return stop }}.Walk(g, func(name string) Task {
		started = append(started, name)
		return func() Done { return func() (bool, Task) { stop = name == "c"; return true, nil } }
	})
	if want := []string{"a", "b", "c"}; !reflect.DeepEqual(started, want) {
		t.Errorf("started %#v, want %#v", started, want)
	}
	if want := []string{"d"}; !reflect.DeepEqual(notStarted, want) {
		t.Errorf("not started %#v, want %#v", notStarted, want)
	}
}

// TestOrderIsDeterministic: a graph built in another order gives the order
// of its own insertion.
func TestOrderIsDeterministic(t *testing.T) {
	g := graphOf("edcba", "ab", "bc")
	want := []string{"e", "d", "c", "b", "a"}
	for range 50 {
		if got := g.Order(); !reflect.DeepEqual(got, want) {
			t.Fatalf("Order() = %#v, want %#v", got, want)
		}
	}
}

// randomGraph builds an acyclic graph of n vertices: each may depend on
// those added before it.
func randomGraph(r *rand.Rand, n int) *Graph {
	g := New()
	for i := range n {
		g.Add(fmt.Sprintf("v%02d", i))
	}
	for i := range n {
		for j := range i {
			if r.IntN(4) == 0 {
				g.Connect(fmt.Sprintf("v%02d", i), fmt.Sprintf("v%02d", j))
			}
		}
	}
	return g
}

// waitsFor works out, the slow way, what each vertex the walk visits waits
// for: its neighbours in the walk's direction that it visits, and with
// Through those it reaches through vertices it does not visit.
func waitsFor(g *Graph, w Walker) map[string][]string {
	next := g.DependsOn
	if w.Reverse {
		next = g.Dependents
	}
	visit := func(name string) bool { return w.Visit == nil || w.Visit(name) }
	out := map[string][]string{}
	for _, v := range g.names {
		if !visit(v) {
			continue
		}
		out[v] = []string{}
		seen := map[string]bool{}
		stack := next(v)
		for len(stack) > 0 {
			u := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch {
			case seen[u]:
			case visit(u):
				out[v] = append(out[v], u)
			case w.Through:
				stack = append(stack, next(u)...)
			}
			seen[u] = true
		}
	}
	return out
}

// expectedSequence is the order a walk of one task at a time starts the
// vertices in, and those it never starts, worked out the slow way: at each
// turn, among the vertices all whose waits are over and released, the
// lowest priority, then the first added.
func expectedSequence(g *Graph, w Walker, held map[string]bool) (started, notStarted []string) {
	waits := waitsFor(g, w)
	done := map[string]bool{}
	for {
		best := ""
		for _, v := range g.names {
			if _, visit := waits[v]; !visit || done[v] {
				continue
			}
			ok := true
			for _, u := range waits[v] {
				ok = ok && done[u] && !held[u]
			}
			if ok && (best == "" || w.Priority != nil && w.Priority(v) < w.Priority(best)) {
				best = v
			}
		}
		if best == "" {
			break
		}
		started = append(started, best)
		done[best] = true
	}
	for _, v := range g.names {
		if _, visit := waits[v]; visit && !done[v] {
			notStarted = append(notStarted, v)
		}
	}
	return started, notStarted
}

// randomWalker draws the walk's settings: the direction, a subset half the
// time (passed through or ignored), a priority half the time.
func randomWalker(r *rand.Rand, g *Graph, parallelism int) (Walker, map[string]bool) {
	w := Walker{Reverse: r.IntN(2) == 0, Parallelism: parallelism, Through: r.IntN(2) == 0}
	if r.IntN(2) == 0 {
		subset := map[string]bool{}
		for _, v := range g.names {
			subset[v] = r.IntN(3) > 0
		}
		w.Visit = func(name string) bool { return subset[name] }
	}
	if r.IntN(2) == 0 {
		rank := map[string]int{}
		for _, v := range g.names {
			rank[v] = r.IntN(5)
		}
		w.Priority = func(name string) int { return rank[name] }
	}
	held := map[string]bool{}
	for _, v := range g.names {
		held[v] = r.IntN(8) == 0
	}
	return w, held
}

func describe(w Walker, held map[string]bool) string {
	var holding []string
	for v, h := range held {
		if h {
			holding = append(holding, v)
		}
	}
	slices.Sort(holding)
	return fmt.Sprintf("reverse %v, parallelism %d, subset %v, through %v, priority %v, held %v",
		w.Reverse, w.Parallelism, w.Visit != nil, w.Through, w.Priority != nil, holding)
}

// TestWalkOneAtATimeFollowsPriority compares walks of one task at a time
// with the slow reckoning of what they must do.
func TestWalkOneAtATimeFollowsPriority(t *testing.T) {
	for i := range walkRepeats {
		r := rand.New(rand.NewPCG(uint64(i), 1))
		g := randomGraph(r, 1+r.IntN(20))
		w, held := randomWalker(r, g, 1)
		var started []string
		notStarted := w.Walk(g, func(name string) Task {
			started = append(started, name)
			return func() Done { return func() (bool, Task) { return !held[name], nil } }
		})
		wantStarted, wantNotStarted := expectedSequence(g, w, held)
		if !reflect.DeepEqual(started, wantStarted) || !reflect.DeepEqual(notStarted, wantNotStarted) {
			t.Fatalf("walk %d (%s) on %v:\nstarted %v, not started %v\nwant %v, %v",
				i, describe(w, held), g.deps, started, notStarted, wantStarted, wantNotStarted)
		}
	}
}

// TestWalkConcurrently repeats concurrent walks of random graphs, in both
// directions, with and without subsets: no vertex starts before what it
// waits for is over and released, no more tasks run at once than
// Parallelism, start and Done share the walk's goroutine (the race
// detector sees the unlocked map), and what never starts is what a
// vertex that held its waiters kept from starting.
func TestWalkConcurrently(t *testing.T) {
	for i := range walkRepeats {
		r := rand.New(rand.NewPCG(uint64(i), 2))
		g := randomGraph(r, 1+r.IntN(30))
		w, held := randomWalker(r, g, 2+r.IntN(4))
		waits := waitsFor(g, w)
		// Read and written by start and Done only: the walk's goroutine.
		over := map[string]bool{}
		inFlight := 0 // tasks started whose Done has not run
		notStarted := w.Walk(g, func(name string) Task {
			for _, u := range waits[name] {
				if !over[u] || held[u] {
					t.Errorf("walk %d (%s): %s started before %s was over and released", i, describe(w, held), name, u)
				}
			}
			if inFlight == w.Parallelism {
				t.Errorf("walk %d (%s): %s started with %d tasks under way", i, describe(w, held), name, inFlight)
			}
			inFlight++
			return func() Done {
				return func() (bool, Task) {
					inFlight--
					over[name] = true
					return !held[name], nil
				}
			}
		})
		if _, want := expectedSequence(g, w, held); !reflect.DeepEqual(notStarted, want) {
			t.Errorf("walk %d (%s): not started %v, want %v", i, describe(w, held), notStarted, want)
		}
		for v := range waits {
			if !over[v] && !slices.Contains(notStarted, v) {
				t.Errorf("walk %d (%s): %s neither ended nor is said not started", i, describe(w, held), v)
			}
		}
	}
}

// TestWalkStopConcurrently: once Stop says so (as after a failure), no
// vertex starts, and the running tasks finish before Walk returns.
func TestWalkStopConcurrently(t *testing.T) {
	for i := range walkRepeats {
		r := rand.New(rand.NewPCG(uint64(i), 3))
		g := randomGraph(r, 1+r.IntN(30))
		w, _ := randomWalker(r, g, 2+r.IntN(4))
		failing := g.names[r.IntN(len(g.names))]
		stopped := false
		w.Stop = func() bool { return stopped }
		started := map[string]bool{}
		ended := map[string]bool{}
		var mu sync.Mutex // guards finished
		finished := map[string]bool{}
		notStarted := w.Walk(g, func(name string) Task {
			if stopped {
				t.Errorf("walk %d: %s started after the walk was stopped", i, name)
			}
			started[name] = true
			return func() Done {
				mu.Lock()
				finished[name] = true
				mu.Unlock()
				return func() (bool, Task) {
					ended[name] = true
					if name == failing {
						stopped = true
						return false, nil
					}
					return true, nil
				}
			}
		})
		for v := range started {
			if !ended[v] || !finished[v] {
				t.Errorf("walk %d: %s started and was still running when the walk returned", i, v)
			}
		}
		for _, v := range g.names {
			if (w.Visit == nil || w.Visit(v)) && started[v] == slices.Contains(notStarted, v) {
				t.Errorf("walk %d: %s started %v, yet said not started %v", i, v, started[v], !started[v])
			}
		}
	}
}

// TestWalkReachesParallelism: as many tasks as Parallelism allows run at
// once. The tasks meet in groups of that size, which only happens if they
// run together; a walker that ran fewer would never return.
func TestWalkReachesParallelism(t *testing.T) {
	for parallelism := 2; parallelism <= 4; parallelism++ {
		t.Run(fmt.Sprint(parallelism), func(t *testing.T) {
			for range walkRepeats / 10 {
				g := New()
				for i := range 3 * parallelism {
					g.Add(fmt.Sprint(i))
				}
				var mu sync.Mutex
				arrived := 0
				gate := make(chan struct{})
				Walker{Parallelism: parallelism}.Walk(g, func(string) Task {
					return func() Done {
						mu.Lock()
						arrived++
						wait := gate
						if arrived == parallelism {
							arrived = 0
							close(gate)
							gate = make(chan struct{})
						}
						mu.Unlock()
						<-wait
						return nil
					}
				})
			}
		})
	}
}

// BenchmarkWalk walks the shape of examples/leaves.hcl for 100 apps (100
// chains of five) with tasks that do nothing but record, in their Done,
// that they ran: the walker's own cost per vertex.
func BenchmarkWalk(b *testing.B) {
	g := New()
	for app := range 100 {
		prev := ""
		for step := range 5 {
			name := fmt.Sprintf("%d.%d", app, step)
			g.Add(name)
			if prev != "" {
				g.Connect(name, prev)
			}
			prev = name
		}
	}
	for b.Loop() {
		over := make(map[string]bool, 500)
		Walker{Parallelism: 16}.Walk(g, func(name string) Task {
			return func() Done {
				return func() (bool, Task) {
					over[name] = true
					return true, nil
				}
			}
		})
	}
}

// TestWalkFollowUp: a Done that goes on with another task keeps its
// vertex running: its waiters wait for the follow-up, which runs although
// Stop said stop, and whose Done decides; with one task at a time the
// follow-up runs at once, on the walk's goroutine.
func TestWalkFollowUp(t *testing.T) {
	// b depends on a, c on b; d stands alone.
	for _, parallelism := range []int{1, 2, 4} {
		for _, hold := range []bool{false, true} {
			g := graphOf("abcd", "ba", "cb")
			var mu sync.Mutex
			var events []string
			note := func(e string) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
			stop := false
			notStarted := Walker{Parallelism: parallelism, Stop: func() bool { return stop }}.Walk(g, func(name string) Task {
				note("start " + name)
				return func() Done {
					return func() (bool, Task) {
						if name != "a" {
							return true, nil
						}
						stop = hold
						return false, func() Done {
							note("follow-up a")
							return func() (bool, Task) { return !hold, nil }
						}
					}
				}
			})
			where := fmt.Sprintf("parallelism %d, hold %v: %v", parallelism, hold, events)
			up, b := slices.Index(events, "follow-up a"), slices.Index(events, "start b")
			if up < 0 {
				t.Fatalf("%s: the follow-up never ran", where)
			}
			if hold {
				// d may have started alongside a, before Stop said stop.
				if b >= 0 || !slices.Contains(notStarted, "b") || !slices.Contains(notStarted, "c") {
					t.Errorf("%s: not started %v, want b and c among them", where, notStarted)
				}
				continue
			}
			if b < up || len(notStarted) != 0 {
				t.Errorf("%s: b started before the follow-up ended, or not started %v", where, notStarted)
			}
		}
	}
}
