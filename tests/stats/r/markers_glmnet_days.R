# Reference values for pathomics_desktop.stats.lasso_cox with survival times in DAYS (ties between
# censored and event times; survival::lung and survival::pbc, exported by export_data.R), computed
# with glmnet's DEFAULTS (thresh = 1e-7, lambda.min.ratio, nlambda = 100, standardize = TRUE) and
# cv.glmnet(type.measure = "deviance", grouped = TRUE)
# with a fixed foldid. Also a fit on the rows in reversed order: glmnet's risk sets for censored
# times equal to event times >= 256 depend on the row order (see lasso_cox module docstring).
# Run from the repository root:  Rscript tests/stats/r/markers_glmnet_days.R
suppressMessages({library(survival); library(glmnet); library(jsonlite)})
dd <- "tests/stats/data"
lung <- read.csv(file.path(dd, "lung.csv")); pbc <- read.csv(file.path(dd, "pbc.csv"))
coxexample25 <- read.csv(file.path(dd, "coxexample25.csv"))  # written by markers_reference.R
coxexample25$event <- coxexample25$status
lung$event <- as.integer(lung$status == 2)
pbc$event <- as.integer(pbc$status == 2)
path_out <- function(f) list(lambda = f$lambda, dev_ratio = f$dev.ratio, nulldev = f$nulldev,
                             beta = lapply(seq_along(f$lambda), function(k) as.numeric(f$beta[, k])))
case <- function(df, features, label, standardize = TRUE, nfold = 10, seed = 1) {
  d <- df[complete.cases(df[, c("time", "event", features)]), ]
  x <- as.matrix(d[, features]); y <- Surv(d$time, d$event)
  f <- glmnet(x, y, family = "cox", standardize = standardize)
  rev_i <- rev(seq_len(nrow(d)))
  fr <- glmnet(x[rev_i, ], y[rev_i, ], family = "cox", standardize = standardize)
  set.seed(seed)
  foldid <- sample(rep(seq_len(nfold), length.out = nrow(d)))
  cv <- cv.glmnet(x, y, family = "cox", standardize = standardize, foldid = foldid)
  lam_fit <- sqrt(f$lambda[10] * f$lambda[11])  # between two path lambdas
  # what coef(f, s = lam_fit, exact = TRUE, x = x, y = y) does: refit on the union of lambdas
  lam_union <- sort(unique(c(f$lambda, lam_fit)), decreasing = TRUE)
  fu <- glmnet(x, y, family = "cox", standardize = standardize, lambda = lam_union)
  cf <- fu$beta[, match(lam_fit, lam_union)]
  ev_times <- unique(d$time[d$event == 1])
  list(dataset = label, features = features, standardize = standardize, n = nrow(d),
       censored_at_event_time = sum(d$event == 0 & d$time %in% ev_times),
       of_which_ge_256 = sum(d$event == 0 & d$time %in% ev_times & d$time >= 256),
       default = path_out(f), reversed_rows = path_out(fr),
       foldid = foldid, cv_lambda = cv$lambda, cvm = cv$cvm, cvsd = cv$cvsd,
       lambda_min = cv$lambda.min, lambda_1se = cv$lambda.1se,
       fit_lambda = lam_fit, fit_coef = as.numeric(cf))
}
out <- list(cases = list(
  case(lung, c("age", "sex", "ph.ecog", "ph.karno", "pat.karno", "meal.cal", "wt.loss"), "lung"),
  case(lung, c("age", "sex", "ph.ecog", "ph.karno", "pat.karno", "meal.cal", "wt.loss"), "lung", standardize = FALSE),
  case(pbc, c("age", "bili", "albumin", "protime", "copper", "ast", "platelet", "chol", "alk.phos", "trig"), "pbc"),
  # more features (30) than subjects (25), continuous times without ties
  case(coxexample25, paste0("f", 1:30), "coxexample25", nfold = 5)),
  # glmnet's sort puts the censored 300 (row 3) before the event at 300 (row 2): not at risk there
  tiny = list(time = c(100, 300, 300, 400), status = c(1, 1, 0, 1), pred = c(0.3, -0.2, 0.9, 0.1),
              deviance_days = coxnet.deviance(pred = c(0.3, -0.2, 0.9, 0.1), y = Surv(c(100, 300, 300, 400), c(1, 1, 0, 1))),
              deviance_scaled = coxnet.deviance(pred = c(0.3, -0.2, 0.9, 0.1), y = Surv(c(1, 3, 3, 4), c(1, 1, 0, 1)))),
  versions = list(R = R.version.string, glmnet = as.character(packageVersion("glmnet")),
                  survival = as.character(packageVersion("survival"))))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"),
           "tests/stats/reference/markers_glmnet_days.json")
cat("written\n")
