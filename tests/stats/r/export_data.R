# Writes CSV copies of public data sets shipped with R's survival package
# (lung, veteran, colon, pbc, ovarian) into tests/stats/data/ for the Python tests.
# Run from the repository root:  Rscript tests/stats/r/export_data.R
library(survival)
out <- "tests/stats/data"
w <- function(df, name) {
  path <- file.path(out, paste0(name, ".csv"))
  if (!file.exists(path)) write.csv(df, path, row.names = FALSE, na = "")
}
w(survival::lung, "lung")
w(survival::veteran, "veteran")
w(survival::colon, "colon")
w(survival::pbc, "pbc")
w(survival::ovarian, "ovarian")
