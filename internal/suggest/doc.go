// Package suggest finds the name an operator probably meant ("did you
// mean"), for every layer that reports a misspelt name: a variable, a step
// reference, a Vault mount. It knows nothing of what the names are.
package suggest
