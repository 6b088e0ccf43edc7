//go:build !unix

package policy

import "io/fs"

// inode is unknown here; mtime and size still see most changes.
func inode(fs.FileInfo) uint64 { return 0 }
