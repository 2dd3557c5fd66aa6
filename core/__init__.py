"""The ground floor: errors a user can fix and Ctrl-C, atomic files, locks, file kinds.
Imports nothing of the project."""
