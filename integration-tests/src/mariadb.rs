//! MariaDB in a container (being written).
