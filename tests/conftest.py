pytest_plugins = ["tests.fixtures.egress"]
