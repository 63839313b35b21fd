"""The gin configs. A package so that a config's `include 'configs/<base>.gin'` resolves from any working
directory: gin looks a relative include up under the current directory first, then as a file of the Python
package it names (gin.resource_reader), and the repository root is on sys.path for every entry point."""
