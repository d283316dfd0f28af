package steps

// tempFilled is a test hook: a build with the failpoints tag sets it so
// that a crash test can kill rotplan while a write's temporary file is
// full and not yet renamed. In other builds it does nothing.
var tempFilled = func() {}
