// Package fullfs gives tests a real filesystem that runs out of space: a
// small tmpfs mounted for the test, which they can fill. A state directory
// on it fails as a full disk does (ENOSPC), with no fake in between. It is
// for tests only, and needs root (mounting); tests skip without it.
package fullfs
