package dag

// Walker walks a graph: it starts each vertex once every vertex it waits for
// is over, up to Parallelism at a time, the one Priority puts first among
// those ready together. Going forward a vertex waits for what it depends on;
// in Reverse, for what depends on it.
//
// The zero Walker visits every vertex, one at a time, in Order.
type Walker struct {
	// Reverse: a vertex waits for its dependents instead of its
	// dependencies (undoing what a run did).
	Reverse bool
	// Parallelism bounds how many tasks run at once; below 1 means 1.
	// With 1 every task runs on the goroutine that called Walk.
	Parallelism int
	// Priority ranks the vertices that are ready together: the lowest
	// starts first, and among equals the one added to the graph first.
	// Nil ranks them all equal. It is asked once per vertex, at the start.
	Priority func(name string) int
	// Visit, when set, limits the walk to the vertices it holds; nil
	// visits every vertex. What becomes of the edges to the others is
	// Through's.
	Visit func(name string) bool
	// Through: a visited vertex waits for the visited ones it reaches
	// through vertices not visited, as if each of those were over as
	// soon as everything it waits for is. Without it, edges to vertices
	// not visited are ignored: a visited vertex does not wait for them.
	Through bool
	// Stop, when set, is asked before each vertex starts; once it says
	// true no vertex starts any more, and the walk ends when the running
	// tasks have. It is asked on the walk's goroutine.
	Stop func() bool
}

// Task is the work of one vertex. It runs concurrently with the tasks of
// other vertices, and returns what to do once it is over (a Done), or nil
// when there is nothing to do and the vertex's waiters may start.
type Task func() Done

// Done runs when a vertex's task is over, on the walk's own goroutine, one
// vertex at a time: it is where the caller keeps what the walk learns
// without a lock. It reports whether the vertices that wait for this one
// may start; false holds them, and whatever waits for them, for good.
// Unless it returns a task to go on with (then): the vertex is not over
// yet, that task runs as its own did (Stop does not hold it back), and
// its Done decides.
type Done func() (release bool, then Task)

// Walk walks g. start is called on the walk's goroutine, one vertex at a
// time, when the vertex may start; it returns the vertex's task, or nil
// when there is nothing to run (the vertex is over at once and releases its
// waiters). Walk returns when no task is running and none can start, with
// the vertices to visit that never started, in the order they were added:
// they wait for a vertex that did not release them, or the walk was
// stopped.
//
// The graph must not change during the walk, and must have no cycles: a
// vertex on one never starts.
func (w Walker) Walk(g *Graph, start func(name string) Task) (notStarted []string) {
	s := w.newWalk(g)
	parallelism := max(w.Parallelism, 1)
	type job struct {
		v    int
		task Task
	}
	type result struct {
		v    int
		done Done
	}
	var jobs chan job
	var results chan result
	if workers := min(parallelism, s.toVisit); workers > 1 {
		// Workers that live for the walk, rather than a goroutine per
		// vertex: their stacks, grown by the first tasks, stay grown.
		jobs, results = make(chan job), make(chan result)
		defer close(jobs)
		for range workers {
			go func() {
				for j := range jobs {
					results <- result{v: j.v, done: j.task()}
				}
			}()
		}
	}
	running := 0
	for {
		for running < parallelism && len(s.ready.ids) > 0 && (w.Stop == nil || !w.Stop()) {
			v := s.ready.pop()
			s.started[v] = true
			task := start(g.names[v])
			switch {
			case task == nil:
				s.over(v, true)
			case jobs == nil:
				for task != nil { // each task's follow-up, at once
					var release bool
					release, task = ends(task())
					if task == nil {
						s.over(v, release)
					}
				}
			default:
				running++
				jobs <- job{v: v, task: task}
			}
		}
		if running == 0 {
			break
		}
		r := <-results
		if release, then := ends(r.done); then != nil {
			// The worker that ran the task is free, so another takes
			// the follow-up at once.
			jobs <- job{v: r.v, task: then}
		} else {
			running--
			s.over(r.v, release)
		}
	}
	for v, visit := range s.visit {
		if visit && !s.started[v] {
			notStarted = append(notStarted, g.names[v])
		}
	}
	return notStarted
}

// ends runs a task's Done, if any: whether the vertex releases its
// waiters, unless it goes on with another task.
func ends(done Done) (release bool, then Task) {
	if done == nil {
		return true, nil
	}
	return done()
}

// walk is the state of one Walk.
type walk struct {
	g       *Graph
	reverse bool
	visit   []bool // the vertices to visit
	through bool
	toVisit int
	// pending counts, per vertex, the vertices it waits for that are not
	// over yet.
	pending []int
	started []bool
	ready   readyHeap
	// passed are vertices not visited that a Through walk passes through:
	// over as soon as nothing they wait for is pending.
	passed []int
}

func (w Walker) newWalk(g *Graph) *walk {
	n := len(g.names)
	s := &walk{g: g, reverse: w.Reverse, through: w.Through, visit: make([]bool, n),
		pending: make([]int, n), started: make([]bool, n), ready: readyHeap{rank: make([]int, n)}}
	for v, name := range g.names {
		if s.visit[v] = w.Visit == nil || w.Visit(name); s.visit[v] {
			s.toVisit++
			if w.Priority != nil {
				s.ready.rank[v] = w.Priority(name)
			}
		}
	}
	for v := range n {
		if !s.visit[v] && !s.through {
			continue
		}
		s.eachWaitedFor(v, func(u int) {
			if s.visit[u] || s.through {
				s.pending[v]++
			}
		})
	}
	for v := range n {
		if s.pending[v] == 0 {
			s.becomeReady(v)
		}
	}
	s.passThrough()
	return s
}

// eachWaitedFor calls f with each vertex v waits for.
func (s *walk) eachWaitedFor(v int, f func(int)) {
	if s.reverse {
		for _, u := range s.g.users[v] {
			f(u)
		}
		return
	}
	for u := range s.g.deps[v] {
		f(u)
	}
}

// eachWaiter calls f with each vertex that waits for v.
func (s *walk) eachWaiter(v int, f func(int)) {
	if s.reverse {
		for u := range s.g.deps[v] {
			f(u)
		}
		return
	}
	for _, u := range s.g.users[v] {
		f(u)
	}
}

// becomeReady queues a vertex nothing it waits for holds any more.
func (s *walk) becomeReady(v int) {
	switch {
	case s.visit[v]:
		s.ready.push(v)
	case s.through:
		s.passed = append(s.passed, v)
	}
}

// over ends vertex v: when release, what waits for it goes on.
func (s *walk) over(v int, release bool) {
	if !release {
		return
	}
	s.release(v)
	s.passThrough()
}

func (s *walk) release(v int) {
	s.eachWaiter(v, func(u int) {
		if !s.visit[u] && !s.through {
			return
		}
		if s.pending[u]--; s.pending[u] == 0 {
			s.becomeReady(u)
		}
	})
}

// passThrough ends the vertices passed through so far, and those that
// become ready to pass through as a result.
func (s *walk) passThrough() {
	for len(s.passed) > 0 {
		v := s.passed[len(s.passed)-1]
		s.passed = s.passed[:len(s.passed)-1]
		s.release(v)
	}
}

// readyHeap holds the vertices ready to start, the one to start first on
// top: the lowest rank, then the first added to the graph.
type readyHeap struct {
	ids  []int
	rank []int // by vertex
}

func (h *readyHeap) less(a, b int) bool {
	ra, rb := h.rank[a], h.rank[b]
	return ra < rb || (ra == rb && a < b)
}

func (h *readyHeap) push(v int) {
	h.ids = append(h.ids, v)
	for i := len(h.ids) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(h.ids[i], h.ids[parent]) {
			break
		}
		h.ids[i], h.ids[parent] = h.ids[parent], h.ids[i]
		i = parent
	}
}

func (h *readyHeap) pop() int {
	top := h.ids[0]
	last := len(h.ids) - 1
	h.ids[0] = h.ids[last]
	h.ids = h.ids[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < last && h.less(h.ids[l], h.ids[least]) {
			least = l
		}
		if r < last && h.less(h.ids[r], h.ids[least]) {
			least = r
		}
		if least == i {
			break
		}
		h.ids[i], h.ids[least] = h.ids[least], h.ids[i]
		i = least
	}
	return top
}
