# Reference values for pathomics_desktop.stats.{concordance,cutpoint,roc,meta,lasso_cox}
# computed with R (survival, maxstat, pROC, metafor, glmnet) on public data sets.
# Run from the repository root:  Rscript tests/stats/r/markers_reference.R
# Writes tests/stats/reference/markers_reference.json and, when absent, the metafor data sets
# tests/stats/data/bcg.csv and tests/stats/data/hackshaw1998.csv.
suppressMessages({library(survival); library(maxstat); library(pROC); library(metafor); library(glmnet); library(jsonlite)})
dd <- "tests/stats/data"
rd <- function(name) read.csv(file.path(dd, paste0(name, ".csv")))
lung <- rd("lung"); veteran <- rd("veteran"); pbc <- rd("pbc"); colon <- rd("colon"); ovarian <- rd("ovarian")
lung$event <- as.integer(lung$status == 2)
pbc$event <- as.integer(pbc$status == 2)
colon2 <- colon[colon$etype == 2, ]
out <- list()

# ---- concordance (Harrell, reverse = TRUE: higher marker = higher risk), IJ variance
conc_case <- function(df, time, event, marker, label) {
  d <- df[complete.cases(df[, c(time, event, marker)]), ]
  f <- as.formula(paste0("Surv(", time, ",", event, ") ~ ", marker))
  cc <- concordance(f, data = d, reverse = TRUE)
  list(label = label, dataset = label, time = time, event = event, marker = marker, n = nrow(d),
       c = unname(cc$concordance), var = unname(cc$var), count = as.list(cc$count[c("concordant", "discordant", "tied.x")]))
}
out$concordance <- list(
  conc_case(lung, "time", "event", "age", "lung"),
  conc_case(lung, "time", "event", "ph.karno", "lung"),
  conc_case(lung, "time", "event", "meal.cal", "lung"),
  conc_case(veteran, "time", "status", "karno", "veteran"),
  conc_case(veteran, "time", "status", "age", "veteran"),
  conc_case(pbc, "time", "event", "bili", "pbc"),
  conc_case(pbc, "time", "event", "albumin", "pbc"),
  conc_case(colon2, "time", "status", "nodes", "colon"),
  conc_case(ovarian, "futime", "fustat", "age", "ovarian"))

paired_case <- function(df, time, event, m1, m2, label) {
  d <- df[complete.cases(df[, c(time, event, m1, m2)]), ]
  f1 <- coxph(as.formula(paste0("Surv(", time, ",", event, ") ~ ", m1)), data = d, init = 1, control = coxph.control(iter.max = 0))
  f2 <- coxph(as.formula(paste0("Surv(", time, ",", event, ") ~ ", m2)), data = d, init = 1, control = coxph.control(iter.max = 0))
  cc <- concordance(f1, f2)
  v <- cc$var
  list(dataset = label, time = time, event = event, marker1 = m1, marker2 = m2, n = nrow(d),
       c1 = unname(cc$concordance[1]), c2 = unname(cc$concordance[2]),
       var_diff = v[1, 1] + v[2, 2] - 2 * v[1, 2])
}
out$paired <- list(paired_case(lung, "time", "event", "age", "ph.karno", "lung"),
                   paired_case(pbc, "time", "event", "bili", "albumin", "pbc"))

# ---- maxstat (LogRank, Lau94)
ms_case <- function(df, time, event, marker, label, minprop = 0.1) {
  d <- df[complete.cases(df[, c(time, event, marker)]), ]
  f <- as.formula(paste0("Surv(", time, ",", event, ") ~ ", marker))
  m <- maxstat.test(f, data = d, smethod = "LogRank", pmethod = "Lau94", minprop = minprop, maxprop = 1 - minprop)
  list(dataset = label, time = time, event = event, marker = marker, minprop = minprop, n = nrow(d),
       statistic = unname(m$statistic), cutpoint = unname(m$estimate), p = unname(m$p.value))
}
out$maxstat <- list(
  ms_case(lung, "time", "event", "age", "lung"),
  ms_case(lung, "time", "event", "meal.cal", "lung"),
  ms_case(veteran, "time", "status", "karno", "veteran"),
  ms_case(pbc, "time", "event", "bili", "pbc"),
  ms_case(pbc, "time", "event", "protime", "pbc", 0.2),
  ms_case(colon2, "time", "status", "nodes", "colon"),
  ms_case(ovarian, "futime", "fustat", "age", "ovarian"))

# ---- log-rank and Cox (Efron) for groups defined by cuts
grp_case <- function(df, time, event, marker, cuts, label) {
  d <- df[complete.cases(df[, c(time, event, marker)]), ]
  g <- findInterval(d[[marker]], cuts, left.open = TRUE)
  sd <- survdiff(Surv(d[[time]], d[[event]]) ~ g)
  cf <- coxph(Surv(d[[time]], d[[event]]) ~ factor(g))
  list(dataset = label, time = time, event = event, marker = marker, cuts = cuts,
       chisq = unname(sd$chisq), hr = unname(exp(coef(cf))), se = unname(sqrt(diag(vcov(cf)))))
}
out$groups <- list(grp_case(lung, "time", "event", "age", c(60), "lung"),
                   grp_case(pbc, "time", "event", "bili", c(1.1, 3.4), "pbc"),
                   grp_case(veteran, "time", "status", "karno", c(40, 70), "veteran"))

# ---- pROC: AUC, DeLong CI, paired DeLong test, Youden
roc_case <- function(df, label_col, s1, s2, label) {
  d <- df[complete.cases(df[, c(label_col, s1, s2)]), ]
  r1 <- roc(d[[label_col]], d[[s1]], direction = "<", levels = c(0, 1), quiet = TRUE)
  r2 <- roc(d[[label_col]], d[[s2]], direction = "<", levels = c(0, 1), quiet = TRUE)
  ci <- ci.auc(r1, method = "delong")
  tt <- roc.test(r1, r2, method = "delong", paired = TRUE)
  best <- coords(r1, "best", best.method = "youden", ret = c("threshold", "sensitivity", "specificity", "ppv", "npv"))
  list(dataset = label, label = label_col, score = s1, vs = s2, n = nrow(d), auc = as.numeric(r1$auc), auc2 = as.numeric(r2$auc),
       ci_lower = ci[1], ci_upper = ci[3], var = var(r1, method = "delong"), delong_p = unname(tt$p.value),
       delong_z = unname(tt$statistic), youden_threshold = best$threshold[1], sensitivity = best$sensitivity[1],
       specificity = best$specificity[1], ppv = best$ppv[1], npv = best$npv[1])
}
out$roc <- list(roc_case(pbc, "event", "bili", "albumin", "pbc"),
                roc_case(lung, "event", "ph.karno", "age", "lung"))

# ---- metafor
bcg_path <- file.path(dd, "bcg.csv")
if (!file.exists(bcg_path)) {
  b <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
  write.csv(data.frame(trial = b$trial, author = b$author, year = b$year, yi = as.numeric(b$yi), sei = sqrt(as.numeric(b$vi))),
            bcg_path, row.names = FALSE)
}
hs_path <- file.path(dd, "hackshaw1998.csv")
if (!file.exists(hs_path)) {
  h <- dat.hackshaw1998
  write.csv(data.frame(study = h$study, author = h$author, year = h$year, yi = h$yi, sei = sqrt(h$vi)), hs_path, row.names = FALSE)
}
meta_case <- function(path, label) {
  d <- read.csv(path)
  res <- list()
  for (m in c("DL", "REML", "FE")) {
    # REML: a tight convergence threshold (metafor's default stops at a tau^2 change < 1e-5)
    r <- rma(yi = d$yi, sei = d$sei, method = m, control = list(threshold = 1e-12, maxiter = 1000))
    p <- predict(r)
    res[[m]] <- list(estimate = as.numeric(r$b), se = r$se, ci_lower = r$ci.lb, ci_upper = r$ci.ub, tau2 = r$tau2,
                     i2 = r$I2, q = r$QE, q_p = r$QEp, pi_lower = if (is.null(p$pi.lb)) p$ci.lb else p$pi.lb,
                     pi_upper = if (is.null(p$pi.ub)) p$ci.ub else p$pi.ub)
  }
  list(dataset = label, file = basename(path), fits = res)
}
out$meta <- list(meta_case(bcg_path, "bcg"), meta_case(hs_path, "hackshaw1998"))

# ---- glmnet Cox LASSO
# glmnet breaks ties between a censored and an event time by adding 100 * .Machine$double.eps to
# censored times, which is lost for times above 256 (days); its risk sets then follow the order
# of its own (non-stable) quicksort, deterministic for a given row order. These reference values
# use times in years (< 256); markers_glmnet_days.R covers times in days, which
# pathomics_desktop.stats.lasso_cox reproduces with ties = "glmnet" (its default).
lung$years <- lung$time / 365.25
pbc$years <- pbc$time / 365.25
gl_case <- function(df, time, event, features, label, standardize = TRUE, nfold = 5, thresh = 1e-14) {
  d <- df[complete.cases(df[, c(time, event, features)]), ]
  x <- as.matrix(d[, features]); y <- Surv(d[[time]], d[[event]])
  f <- glmnet(x, y, family = "cox", standardize = standardize)
  ft <- glmnet(x, y, family = "cox", standardize = standardize, thresh = thresh, maxit = 1e6)
  foldid <- rep(seq_len(nfold), length.out = nrow(d))
  cv <- cv.glmnet(x, y, family = "cox", standardize = standardize, foldid = foldid, thresh = thresh, maxit = 1e6)
  pick <- unique(round(seq(2, length(ft$lambda), length.out = 8)))
  list(dataset = label, time = time, event = event, features = features, standardize = standardize, n = nrow(d),
       lambda = f$lambda, lambda_tight = ft$lambda, dev_ratio = ft$dev.ratio,
       coef_tight = lapply(pick, function(k) list(lambda = ft$lambda[k], coef = as.numeric(ft$beta[, k]))),
       coef_default = lapply(pick, function(k) if (k <= length(f$lambda)) list(lambda = f$lambda[k], coef = as.numeric(f$beta[, k])) else NULL),
       thresh = thresh, foldid = foldid, cv_lambda = cv$lambda, cvm = cv$cvm, cvsd = cv$cvsd, lambda_min = cv$lambda.min, lambda_1se = cv$lambda.1se)
}
# more features (30) than subjects (25): glmnet's CoxExample data, first 25 rows
cox25_path <- file.path(dd, "coxexample25.csv")
if (!file.exists(cox25_path)) {
  data(CoxExample)
  ce <- data.frame(time = CoxExample$y[1:25, "time"], status = CoxExample$y[1:25, "status"], CoxExample$x[1:25, ])
  names(ce) <- c("time", "status", paste0("f", 1:30))
  write.csv(ce, cox25_path, row.names = FALSE)
}
coxexample25 <- read.csv(cox25_path)
out$glmnet <- list(
  gl_case(pbc, "years", "event", c("age", "bili", "albumin", "protime", "copper", "ast", "platelet", "chol", "alk.phos", "trig"), "pbc"),
  gl_case(lung, "years", "event", c("age", "sex", "ph.ecog", "ph.karno", "pat.karno", "meal.cal", "wt.loss"), "lung"),
  gl_case(lung, "years", "event", c("age", "sex", "ph.ecog", "ph.karno", "pat.karno", "meal.cal", "wt.loss"), "lung", standardize = FALSE),
  gl_case(veteran, "time", "status", c("karno", "diagtime", "age", "prior", "trt"), "veteran"),
  gl_case(coxexample25, "time", "status", paste0("f", 1:30), "coxexample25", thresh = 1e-11))
out$versions <- list(R = R.version.string, survival = as.character(packageVersion("survival")),
                     maxstat = as.character(packageVersion("maxstat")), pROC = as.character(packageVersion("pROC")),
                     metafor = as.character(packageVersion("metafor")), glmnet = as.character(packageVersion("glmnet")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           "tests/stats/reference/markers_reference.json")
cat("written\n")
