package dag

import "sort"

// Graph is a directed graph of named vertices in which an edge from a to b
// means a depends on b. It knows nothing of what its vertices are.
type Graph struct {
	names []string       // insertion order, the tie-break of every ordering
	index map[string]int // name -> position in names
	deps  []map[int]bool // deps[i]: what i depends on
	users [][]int        // users[i]: what depends on i (its dependents)
}

// New returns an empty graph.
func New() *Graph { return &Graph{index: map[string]int{}} }

// Add adds a vertex; adding one twice is harmless.
func (g *Graph) Add(name string) {
	if _, ok := g.index[name]; ok {
		return
	}
	g.index[name] = len(g.names)
	g.names = append(g.names, name)
	g.deps = append(g.deps, map[int]bool{})
	g.users = append(g.users, nil)
}

// Connect records that from depends on to. Both must have been added.
func (g *Graph) Connect(from, to string) {
	f, t := g.index[from], g.index[to]
	if g.deps[f][t] {
		return
	}
	g.deps[f][t] = true
	g.users[t] = append(g.users[t], f)
}

// DependsOn returns the direct dependencies of a vertex, in insertion order.
func (g *Graph) DependsOn(name string) []string {
	var out []int
	for d := range g.deps[g.index[name]] {
		out = append(out, d)
	}
	sort.Ints(out)
	return g.namesOf(out)
}

// Dependents returns the vertices that depend directly on a vertex, in
// insertion order.
func (g *Graph) Dependents(name string) []string {
	ids := append([]int(nil), g.users[g.index[name]]...)
	sort.Ints(ids)
	return g.namesOf(ids)
}

func (g *Graph) namesOf(ids []int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = g.names[id]
	}
	return out
}

// Cycles returns every cycle: each strongly connected component of more than
// one vertex, and each vertex that depends on itself, with the vertices in
// insertion order. It uses Tarjan's algorithm.
func (g *Graph) Cycles() [][]string {
	n := len(g.names)
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var cycles [][]string
	next := 0
	var strongConnect func(v int)
	strongConnect = func(v int) {
		index[v], low[v] = next, next
		next++
		stack = append(stack, v)
		onStack[v] = true
		for _, w := range sortedIDs(g.deps[v]) {
			if index[w] < 0 {
				strongConnect(w)
				low[v] = min(low[v], low[w])
			} else if onStack[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] != index[v] {
			return
		}
		var scc []int
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w] = false
			scc = append(scc, w)
			if w == v {
				break
			}
		}
		if len(scc) > 1 || g.deps[v][v] {
			sort.Ints(scc)
			cycles = append(cycles, g.namesOf(scc))
		}
	}
	for v := 0; v < n; v++ {
		if index[v] < 0 {
			strongConnect(v)
		}
	}
	sort.Slice(cycles, func(i, j int) bool { return g.index[cycles[i][0]] < g.index[cycles[j][0]] })
	return cycles
}

// Order returns the vertices so that each comes after everything it depends
// on; among vertices that are ready together, insertion order decides. The
// graph must have no cycles: a vertex on one, or after one, is left out. It
// is a walk one vertex at a time with nothing to run.
func (g *Graph) Order() []string {
	order := make([]string, 0, len(g.names))
	Walker{}.Walk(g, func(name string) Task {
		order = append(order, name)
		return nil
	})
	return order
}

func sortedIDs(set map[int]bool) []int {
	out := make([]int, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Ints(out)
	return out
}
