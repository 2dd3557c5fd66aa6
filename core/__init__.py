"""The ground floor: errors a user can fix, and atomic files. Imports nothing of the project."""
